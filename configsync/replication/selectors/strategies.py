"""How each data type is synced under the deployment mode (``GET /api/v1/sync/strategies``)."""

from __future__ import annotations

from typing import Any

from configsync.conf import app_settings
from configsync.replication.selectors.status import deployment_mode

SYNCED_DATA_TYPES = {
    "system_configs": "configsync.systemconfig",
    "ai_provider_configs": "providers.aiproviderconfig",
}


def sync_strategies() -> dict[str, Any]:
    """Per data type, how it is synced under the deployment mode (``GET /api/v1/sync/strategies``).

    ``LOCAL_ONLY``: nothing leaves the node. The other modes sync full-duplex with every enabled
    peer every ``CONFIGSYNC_SYNC_INTERVAL_SECONDS`` (and on write).
    """
    mode = deployment_mode()
    interval = app_settings.sync_interval_seconds
    strategies: dict[str, Any] = {}
    for name, label in SYNCED_DATA_TYPES.items():
        if mode == "LOCAL_ONLY":
            strategies[name] = {"model": label, "strategy": "none", "interval_seconds": None}
        else:
            strategies[name] = {
                "model": label,
                "strategy": "full_duplex",
                "interval_seconds": interval or None,
                "push_on_write": True,
                "conflict_rule": "last-write-wins (HLC), loser kept as a conflict",
            }
    return {"mode": mode, "strategies": strategies}
