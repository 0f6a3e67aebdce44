"""A peer's push, received: ``changes_apply`` under this node's strategy matrix."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from configsync.conf import app_settings
from configsync.replication import registry
from configsync.replication.selectors.mode import cycle_mode, strategy_matrix
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.wire import STALE, ItemResult, escaped
from configsync.replication.strategies import EXTERNAL_TO_LOCAL


def changes_receive(
    *,
    changes: Any,
    source_node: str,
    source_name: str,
    source_skew_ms: int | None = None,
    mode: str | None = None,
) -> list[ItemResult]:
    """Apply a batch a peer pushed, one result per item, in its order (see ``changes_apply``).

    ``mode``: this node's cycle mode when the caller read it already (the push endpoint reads it
    with the sender's name, ``selectors.peers.push_source``); else it is read here.

    An item of a data type whose row of this node's matrix does not allow ``external_to_local``
    (sync off, ``backup_only``, every row in ``LOCAL_ONLY``) is not applied and is answered
    ``stale`` (nothing to do here), so the sender moves on. A malformed batch is left to
    ``changes_apply`` to refuse whole, as before.
    """
    if not isinstance(changes, list) or len(changes) > int(app_settings.MAX_PUSH_BATCH):
        return changes_apply(
            changes=changes,
            source_node=source_node,
            source_name=source_name,
            source_skew_ms=source_skew_ms,
        )
    rows = strategy_matrix(mode=mode or cycle_mode())
    allowed = {name for name, row in rows.items() if row.allows(EXTERNAL_TO_LOCAL)}
    answered: dict[int, ItemResult] = {}
    kept: list[int] = []
    for index, change in enumerate(changes):
        data_type = (
            registry.data_type_of(change.get("model", "")) if isinstance(change, dict) else None
        )
        if data_type is not None and data_type not in allowed:
            answered[index] = ItemResult(
                index=index,
                model=escaped(change.get("model"), 100),
                key=escaped(change.get("key"), 255),
                status=STALE,
            )
        else:
            kept.append(index)
    if kept:
        applied = changes_apply(
            changes=[changes[i] for i in kept],
            source_node=source_node,
            source_name=source_name,
            source_skew_ms=source_skew_ms,
        )
        for result in applied:
            answered[kept[result.index]] = replace(result, index=kept[result.index])
    return [answered[i] for i in range(len(changes))]
