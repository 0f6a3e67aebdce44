"""The .env bridge: keeps one ``.env`` file and ``SystemConfig`` consistent in both directions.

``envfile`` (lossless parser/rewriter), ``policy`` (managed set, name/key mapping, secret rule),
``merge`` (per-variable three-way decisions), ``service`` (the runs: ``env_sync``/``import``/
``export``/``diff``), made of ``plan`` (read both sides, decide), ``apply`` (database changes,
bases, conflicts), ``files`` (read once, atomic replace) and ``report`` (what a run did);
``receivers`` (prompt export on change), ``cli`` (``configsync env``), ``models`` (merge bases).
"""
