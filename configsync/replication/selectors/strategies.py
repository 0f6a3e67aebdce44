"""The effective strategy matrix (``GET /api/v1/sync/strategies``, ``configsync mode show``)."""

from __future__ import annotations

from typing import Any

from configsync.replication import registry
from configsync.replication.selectors.mode import (
    deployment_mode,
    deployment_mode_source,
    mode_problems,
    mode_transports,
    strategy_matrix,
)
from configsync.replication.selectors.peers import peers_all


def sync_strategies() -> dict[str, Any]:
    """This node's mode (and where it comes from), the transports it uses and the peers that
    stand for them, the transport problems ``status`` names, and the effective matrix as rows
    keyed by data type (``configsync.replication.strategies``); each row also lists the models
    of its type."""
    mode = deployment_mode()
    models: dict[str, list[str]] = {}
    for rm in registry.all_registered():
        models.setdefault(rm.data_type, []).append(rm.label)
    rows: dict[str, Any] = {}
    for name, row in strategy_matrix(mode=mode).items():
        rows[name] = {**row.as_dict(), "models": sorted(models.get(name, []))}
    return {
        "mode": mode,
        "source": deployment_mode_source(),
        "transports": list(mode_transports(mode=mode)),
        "peers": [
            {"name": p.name, "transport": p.transport, "enabled": p.enabled}
            for p in peers_all()
            if p.transport in mode_transports(mode=mode)
        ],
        "problems": mode_problems(mode=mode),
        "strategies": rows,
    }
