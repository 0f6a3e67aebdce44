"""The .env bridge: keeps one ``.env`` file and ``SystemConfig`` consistent in both directions.

``envfile`` (lossless parser/rewriter, atomic write), ``policy`` (managed set, name/key mapping,
secret rule), ``merge`` (per-variable three-way decisions), ``receivers`` (prompt export on
change). The runs themselves are services: ``configsync.envbridge.service``.
"""
