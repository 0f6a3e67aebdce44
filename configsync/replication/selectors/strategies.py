"""The effective strategy matrix (``GET /api/v1/sync/strategies``, ``configsync mode show``)."""

from __future__ import annotations

from typing import Any

from configsync.replication import registry
from configsync.replication.selectors.mode import (
    deployment_mode,
    deployment_mode_source,
    mode_problems,
    strategy_matrix,
)


def sync_strategies() -> dict[str, Any]:
    """This node's mode (and where it comes from), the transport problems ``status`` names, and
    the effective matrix as rows keyed by data type (``configsync.replication.strategies``);
    each row also lists the models of its type."""
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
        "problems": mode_problems(mode=mode),
        "strategies": rows,
    }
