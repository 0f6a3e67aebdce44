"""Applying a run's plans: database changes, merge bases and conflicts, one variable at a time.

Each variable is applied in its own savepoint inside the run's transaction: database changes go
through ``system_config_set`` / ``system_config_delete`` (so they replicate), together with the
new merge base and, for a both-changed variable, a ``Conflict`` keeping the losing side. A record
that moved since the run read it is deferred to the next run; a value the record refuses is
reported as skipped. File changes are made on the in-memory document, written by the service.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from configsync.actor import ENVBRIDGE, acting
from configsync.envbridge.envfile import EnvDocument
from configsync.envbridge.files import FileState
from configsync.envbridge.merge import Action, outcome
from configsync.envbridge.plan import MODEL_LABEL, VariablePlan
from configsync.envbridge.report import EnvBridgeReport, SkippedVariable
from configsync.exceptions import ConfigKeyError
from configsync.models import EnvBridgeBase, SystemConfig
from configsync.value_types import ValueType

FILE_NODE = "env-file"
"""The pseudo node id of the file side in a ``Conflict``'s HLC (``<mtime ms>:0:env-file``)."""


def plan_apply(
    plan: VariablePlan,
    row: EnvBridgeBase | None,
    *,
    document: EnvDocument,
    real: str,
    state: FileState,
    report: EnvBridgeReport,
) -> bool:
    """Apply one plan; whether it changed a side (``False``: nothing to do, skipped, deferred)."""
    from configsync.services.system_config import system_config_delete, system_config_set

    action, v = plan.decision.action, plan.versions
    agreed = outcome(v, plan.decision)
    if action is Action.NONE and _base_is_current(plan, row, agreed):
        return False  # the common case on every beat: no savepoint, no query
    try:
        with transaction.atomic(), acting(via=ENVBRIDGE):
            if action in (Action.SET_DB, Action.DELETE_DB) and _record_moved(plan):
                report.deferred.append(plan.name)
                return False
            if plan.decision.conflict:
                _record_conflict(plan, real=real, state=state)
            if action is Action.SET_DB:
                system_config_set(
                    key=plan.key,
                    value=v.file,
                    is_sensitive=True if plan.sensitive else None,  # raise, never lower
                    category="env" if plan.record is None else None,
                )
            elif action is Action.DELETE_DB:
                with contextlib.suppress(ConfigKeyError):
                    system_config_delete(key=plan.key)
            _save_base(plan, real=real, row=row, agreed=agreed)
    except ValidationError as exc:
        reason = "; ".join(
            f"{f}: {' '.join(m)}" for f, m in getattr(exc, "message_dict", {}).items()
        ) or " ".join(exc.messages)
        report.skipped.append(SkippedVariable(plan.name, plan.line, f"refused: {reason}"))
        return False
    if action is Action.SET_FILE:
        assert v.db is not None
        document.set(plan.name, v.db)
    elif action is Action.DELETE_FILE:
        document.remove(plan.name)
    return action is not Action.NONE


def _record_moved(plan: VariablePlan) -> bool:
    """Whether the record changed since it was read (a replicated change racing this run).

    Locks the row for the rest of the transaction. A moved record is left for the next run, which
    sees the new value and merges it, instead of overwriting a change this run never saw.
    """
    current = (
        SystemConfig.objects.select_for_update()
        .filter(key=plan.key)
        .values_list("updated_at", flat=True)
        .first()
    )
    return current != (plan.record.updated_at if plan.record is not None else None)


def _base_is_current(plan: VariablePlan, row: EnvBridgeBase | None, agreed: str | None) -> bool:
    """Whether the stored base already says ``agreed`` (``None``: no base), as secret or not."""
    if row is None:
        return agreed is None
    return (
        agreed is not None and plan.versions.base == agreed and row.is_sensitive == plan.sensitive
    )


def _save_base(
    plan: VariablePlan, *, real: str, row: EnvBridgeBase | None, agreed: str | None
) -> None:
    if _base_is_current(plan, row, agreed):
        return
    if agreed is None:
        assert row is not None
        row.delete()
        return
    if row is None:
        row = EnvBridgeBase(
            natural_key=EnvBridgeBase.make_natural_key(real, plan.name),
            path=real,
            variable=plan.name,
        )
    row.set_base(agreed, sensitive=plan.sensitive)
    row.save()


def _record_conflict(plan: VariablePlan, *, real: str, state: FileState) -> None:
    """Keep the losing side of a both-changed variable as a ``Conflict`` (wire form)."""
    from configsync.replication import registry
    from configsync.replication.hlc import HLC
    from configsync.replication.services.conflicts import conflict_create
    from configsync.services.node import node_id

    wire = registry.get(MODEL_LABEL)
    record, replicated = plan.record, plan.replicated
    db_version: dict[str, Any] = {
        "hlc": replicated.hlc if replicated else "",
        "origin": replicated.origin_node if replicated else node_id(),
        "deleted": record is None,
        "data": wire.serialize(record) if record is not None else None,
    }
    file_data: dict[str, Any] | None = None
    if plan.versions.file is not None:
        shadow = SystemConfig(
            key=plan.key,
            value_type=record.value_type if record else ValueType.STR,
            is_sensitive=plan.sensitive,
            category=record.category if record else "env",
            description=record.description if record else "",
        )
        if shadow.is_sensitive:
            shadow.secret_value = plan.versions.file
        else:
            shadow.value = plan.versions.file
        file_data = wire.serialize(shadow)
    mtime_ms = int(state.mtime.timestamp() * 1000) if state.mtime else 0
    file_version: dict[str, Any] = {
        "hlc": str(HLC(mtime_ms, 0, FILE_NODE)),
        "origin": f"env-file:{real}",
        "deleted": plan.versions.file is None,
        "data": file_data,
    }
    conflict_create(
        model_label=MODEL_LABEL,
        natural_key=plan.key,
        source=f"env-file:{real}"[:255],
        local_version=db_version,
        remote_version=file_version,
        winner="remote" if plan.decision.winner == "file" else "local",
    )
