"""The .env bridge: keep one ``.env`` file and ``SystemConfig`` consistent in both directions.

``env_sync`` runs the three-way merge of ``configsync.envbridge.merge`` for every managed variable
(``configsync.envbridge.policy``); ``env_import`` / ``env_export`` force one direction;
``env_diff`` reports what ``env_sync`` would do without doing it.

Contract of a run (all four take ``path``; ``None`` means ``CONFIGSYNC_ENV_FILE``):

* It holds ``named_lock("env-bridge:<real path>")`` for its whole length, so the CLI, the Celery
  task and a second worker never interleave on one file (``env_diff`` reads without the lock).
* A malformed file (:class:`EnvSyntaxError`, with line numbers) or one that cannot be read or
  written (:class:`EnvFileUnavailable`) changes nothing in either direction.
* Database changes go through ``system_config_set`` / ``system_config_delete`` (so they replicate;
  a deletion is a tombstone) together with the new merge bases and any ``Conflict`` rows, in one
  transaction; the file is replaced atomically as the last step *inside* that transaction, so a
  failed write rolls the database back, and a crash after the rename but before the commit is
  healed by the next run (both sides then already agree).
* A value that does not parse as its record's type (or that the record refuses) is reported in
  ``EnvBridgeReport.skipped`` with its line number; that variable is left alone on both sides and
  the rest is applied.
* If the file changes while the run is computing, nothing is written (:class:`EnvFileChanged`);
  the next run retries. Values never appear in an error; reports mask sensitive values.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from configsync.conf import app_settings
from configsync.crypto.errors import DecryptionError
from configsync.envbridge.envfile import EnvDocument, write_atomic
from configsync.envbridge.errors import (
    EnvConfigError,
    EnvFileChanged,
    EnvFileUnavailable,
    EnvLockTimeout,
)
from configsync.envbridge.merge import Action, Decision, Mode, Versions, decide, outcome
from configsync.envbridge.policy import BridgePolicy
from configsync.exceptions import ConfigKeyError
from configsync.locks import named_lock
from configsync.logging import MASK
from configsync.models import EnvBridgeBase, ReplicatedRecord, SystemConfig
from configsync.value_types import ValueType, value_serialize

logger = logging.getLogger(__name__)

MODEL_LABEL = "configsync.systemconfig"
LOCK_TIMEOUT_SECONDS = 300
LOCK_WAIT_SECONDS = 60
FILE_NODE = "env-file"
"""The pseudo node id of the file side in a ``Conflict``'s HLC (``<mtime ms>:0:env-file``)."""

_running: contextvars.ContextVar[bool] = contextvars.ContextVar("env_bridge_running", default=False)


def env_bridge_running() -> bool:
    """Whether this thread is inside a bridge run (its own changes need no further export)."""
    return _running.get()


@dataclass(frozen=True)
class VariableChange:
    """One variable the run changed (or, for a diff, would change)."""

    name: str
    key: str
    action: str
    """``set_db``, ``delete_db``, ``set_file`` or ``delete_file``."""
    old: str | None
    new: str | None
    sensitive: bool
    conflict: bool = False
    winner: str = ""
    line: int | None = None

    @property
    def direction(self) -> str:
        return "file -> database" if self.action.endswith("_db") else "database -> file"

    def as_dict(self) -> dict[str, Any]:
        def shown(value: str | None) -> str | None:
            return MASK if (self.sensitive and value is not None) else value

        return {
            "name": self.name,
            "key": self.key,
            "action": self.action,
            "direction": self.direction,
            "old": shown(self.old),
            "new": shown(self.new),
            "sensitive": self.sensitive,
            "conflict": self.conflict,
            "winner": self.winner,
            "line": self.line,
        }


@dataclass(frozen=True)
class SkippedVariable:
    """A variable left alone on both sides, with the reason (never its value)."""

    name: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.name}{where}: {self.reason}"


@dataclass
class EnvBridgeReport:
    """What a run did; ``dry_run`` for ``env_diff``."""

    path: str
    mode: str
    dry_run: bool = False
    changes: list[VariableChange] = field(default_factory=list)
    skipped: list[SkippedVariable] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    """Variables whose record changed during the run: left for the next run to merge."""
    file_written: bool = False

    @property
    def conflicts(self) -> int:
        return sum(1 for change in self.changes if change.conflict)

    @property
    def to_db(self) -> list[VariableChange]:
        return [c for c in self.changes if c.action.endswith("_db")]

    @property
    def to_file(self) -> list[VariableChange]:
        return [c for c in self.changes if c.action.endswith("_file")]

    def summary(self) -> str:
        verb = "would apply" if self.dry_run else "applied"
        return (
            f"env {self.mode} {self.path}: {verb} {len(self.to_db)} change(s) to the database, "
            f"{len(self.to_file)} to the file; {self.conflicts} conflict(s); "
            f"{len(self.skipped)} skipped"
            + (f"; {len(self.deferred)} deferred to the next run" if self.deferred else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "file_written": self.file_written,
            "conflicts": self.conflicts,
            "changes": [change.as_dict() for change in self.changes],
            "skipped": [{"name": s.name, "line": s.line, "reason": s.reason} for s in self.skipped],
            "deferred": list(self.deferred),
        }


# --- public services -------------------------------------------------------------------------
def env_sync(*, path: str | None = None) -> EnvBridgeReport:
    """Three-way merge of the file and the database (see the module docstring)."""
    return _run(path=path, mode="sync", dry_run=False)


def env_import(*, path: str | None = None) -> EnvBridgeReport:
    """Make the database follow the file for every managed variable; the file is not written."""
    return _run(path=path, mode="import", dry_run=False)


def env_export(*, path: str | None = None) -> EnvBridgeReport:
    """Make the file follow the database for every managed variable; the database is unchanged."""
    return _run(path=path, mode="export", dry_run=False)


def env_diff(*, path: str | None = None, mode: Mode = "sync") -> EnvBridgeReport:
    """What ``env_<mode>`` would change, changing nothing (values of secrets masked on output)."""
    return _run(path=path, mode=mode, dry_run=True)


def env_bridge_path(path: str | None = None) -> str:
    """The file a run works on: ``path`` or ``CONFIGSYNC_ENV_FILE``, symlinks resolved."""
    chosen = path or str(app_settings.ENV_FILE or "")
    if not chosen:
        raise EnvConfigError("no .env file: set CONFIGSYNC_ENV_FILE or pass --file")
    return os.path.realpath(os.path.expanduser(chosen))


# --- the run ---------------------------------------------------------------------------------
@dataclass
class _FileState:
    data: bytes | None
    document: EnvDocument
    mtime: datetime | None


@dataclass
class _Plan:
    name: str
    key: str
    record: SystemConfig | None
    replicated: ReplicatedRecord | None
    """The record's replication row as read with it (HLC, origin, tombstone)."""
    versions: Versions
    decision: Decision
    line: int | None
    sensitive: bool
    """Stored (record, base, conflict) and shown (reports) as a secret."""


@contextlib.contextmanager
def _marked_running() -> Iterator[None]:
    token = _running.set(True)
    try:
        yield
    finally:
        _running.reset(token)


def _run(*, path: str | None, mode: Mode, dry_run: bool) -> EnvBridgeReport:
    real = env_bridge_path(path)
    policy = BridgePolicy.from_settings()
    if dry_run:
        return _run_locked(real=real, policy=policy, mode=mode, dry_run=True)
    lock = named_lock(f"env-bridge:{real}", timeout=LOCK_TIMEOUT_SECONDS, wait=LOCK_WAIT_SECONDS)
    with lock as acquired:
        if not acquired:
            raise EnvLockTimeout(f"another env bridge run holds {real}; try again later")
        with _marked_running():
            return _run_locked(real=real, policy=policy, mode=mode, dry_run=False)


def _unavailable(verb: str, real: str, exc: OSError) -> EnvFileUnavailable:
    return EnvFileUnavailable(f"cannot {verb} {real}: {exc.strerror or type(exc).__name__}")


def _read_file(real: str) -> _FileState:
    try:
        with open(real, "rb") as handle:
            data = handle.read()
            mtime = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, tz=UTC)
    except FileNotFoundError:
        return _FileState(data=None, document=EnvDocument([]), mtime=None)
    except OSError as exc:
        raise _unavailable("read", real, exc) from None
    return _FileState(data=data, document=EnvDocument.parse_bytes(data, path=real), mtime=mtime)


def _replicated_rows(keys: set[str]) -> dict[str, ReplicatedRecord]:
    """The replication row of each of ``keys`` that has one (live or tombstone)."""
    # One pass over the model's rows (no IN list: SQLite caps the number of parameters).
    rows = ReplicatedRecord.objects.filter(model_label=MODEL_LABEL).only(
        "natural_key", "hlc", "origin_node", "deleted", "updated_at"
    )
    return {row.natural_key: row for row in rows.iterator() if row.natural_key in keys}


def _version_time(row: ReplicatedRecord) -> datetime:
    """When the version was made: its HLC wall time (the origin node's clock), else the row's."""
    from configsync.replication.hlc import HLC, HLCParseError

    try:
        return datetime.fromtimestamp(HLC.parse(row.hlc).wall_ms / 1000, tz=UTC)
    except HLCParseError:
        return row.updated_at


def _run_locked(*, real: str, policy: BridgePolicy, mode: Mode, dry_run: bool) -> EnvBridgeReport:
    report = EnvBridgeReport(path=real, mode=mode, dry_run=dry_run)
    state = _read_file(real)
    document = state.document
    bases = {row.variable: row for row in EnvBridgeBase.objects.filter(path=real)}
    managed_bases = {name: row for name, row in bases.items() if policy.manages(name)}
    if state.data is None and mode != "export" and managed_bases:
        raise EnvFileUnavailable(
            f"{real} does not exist but the bridge managed {len(managed_bases)} variable(s) in "
            "it; restore it, or run 'env export' to recreate it from the database"
        )

    file_values = {n: v for n, v in document.values().items() if policy.manages(n)}
    records: dict[str, SystemConfig] = {}
    for record in SystemConfig.objects.all():
        name = policy.name_for(record.key)
        if name is not None:
            records[name] = record
    names = sorted(set(file_values) | set(records) | set(managed_bases))
    replicated = _replicated_rows({policy.key_for(n) for n in names})

    plans: list[_Plan] = []
    for name in names:
        plan = _plan_variable(
            name=name,
            policy=policy,
            record=records.get(name),
            replicated=replicated.get(policy.key_for(name)),
            file_raw=file_values.get(name),
            base_row=managed_bases.get(name),
            file_time=state.mtime,
            line=document.line_of(name),
            mode=mode,
            report=report,
        )
        if plan is not None:
            plans.append(plan)
    if dry_run:
        report.changes = [_change_of(p) for p in plans if p.decision.action is not Action.NONE]
        return report

    with transaction.atomic():
        for name, row in bases.items():
            if name not in managed_bases:
                row.delete()  # the variable left the managed set: forget it was managed
        for plan in plans:
            base_row = managed_bases.get(plan.name)
            if _apply(plan, base_row, document=document, real=real, state=state, report=report):
                report.changes.append(_change_of(plan))
        new_data = document.render().encode("utf-8")
        if new_data != (state.data if state.data is not None else b""):
            _write_if_unchanged(real, state, new_data)
            report.file_written = True
    if report.changes or report.skipped:
        logger.info("%s", report.summary())
    return report


def _plan_variable(
    *,
    name: str,
    policy: BridgePolicy,
    record: SystemConfig | None,
    replicated: ReplicatedRecord | None,
    file_raw: str | None,
    base_row: EnvBridgeBase | None,
    file_time: datetime | None,
    line: int | None,
    mode: Mode,
    report: EnvBridgeReport,
) -> _Plan | None:
    value_type = record.value_type if record is not None else ValueType.STR
    file_value: str | None = None
    if file_raw is not None:
        try:
            file_value = value_serialize(file_raw, value_type)
        except ValidationError as exc:
            reason = " ".join(exc.messages)
            report.skipped.append(
                SkippedVariable(name, line, f"does not parse as {value_type}: {reason}")
            )
            return None
    try:
        db_value = record.raw_value() if record is not None else None
        base = base_row.base() if base_row is not None else None
    except DecryptionError as exc:
        report.skipped.append(SkippedVariable(name, line, f"cannot decrypt: {exc.reason}"))
        return None

    # The database side's time: its current version's (a tombstone's for a deleted record);
    # without a matching replication row, the record's updated_at or the base's synced_at.
    db_time: datetime | None
    if replicated is not None and replicated.deleted == (record is None):
        db_time = _version_time(replicated)
    elif record is not None:
        db_time = record.updated_at
    else:
        db_time = base_row.synced_at if base_row is not None else None
    versions = Versions(
        file=file_value, db=db_value, base=base, file_time=file_time, db_time=db_time
    )
    # Never downgraded: a record or base that is a secret keeps the variable one, even when
    # the record was deleted and the file brings a new value the name rule would not flag.
    sensitive = (
        (record is not None and record.is_sensitive)
        or (base_row is not None and base_row.is_sensitive)
        or policy.is_secret(name, file_raw or db_value or "")
    )
    return _Plan(
        name=name,
        key=policy.key_for(name),
        record=record,
        replicated=replicated,
        versions=versions,
        decision=decide(versions, mode),
        line=line,
        sensitive=sensitive,
    )


def _change_of(plan: _Plan) -> VariableChange:
    v, action = plan.versions, plan.decision.action
    to_db = action in (Action.SET_DB, Action.DELETE_DB)
    return VariableChange(
        name=plan.name,
        key=plan.key,
        action=action.value,
        old=v.db if to_db else v.file,
        new=v.file if to_db else v.db,
        sensitive=plan.sensitive,
        conflict=plan.decision.conflict,
        winner=plan.decision.winner,
        line=plan.line,
    )


def _apply(
    plan: _Plan,
    row: EnvBridgeBase | None,
    *,
    document: EnvDocument,
    real: str,
    state: _FileState,
    report: EnvBridgeReport,
) -> bool:
    """Apply one plan; whether it changed a side (``False``: nothing to do, skipped, deferred)."""
    from configsync.services.system_config import system_config_delete, system_config_set

    action, v = plan.decision.action, plan.versions
    agreed = outcome(v, plan.decision)
    if action is Action.NONE and _base_is_current(plan, row, agreed):
        return False  # the common case on every beat: no savepoint, no query
    try:
        with transaction.atomic():
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


def _record_moved(plan: _Plan) -> bool:
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


def _base_is_current(plan: _Plan, row: EnvBridgeBase | None, agreed: str | None) -> bool:
    """Whether the stored base already says ``agreed`` (``None``: no base), as secret or not."""
    if row is None:
        return agreed is None
    return (
        agreed is not None and plan.versions.base == agreed and row.is_sensitive == plan.sensitive
    )


def _save_base(plan: _Plan, *, real: str, row: EnvBridgeBase | None, agreed: str | None) -> None:
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


def _record_conflict(plan: _Plan, *, real: str, state: _FileState) -> None:
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


def _write_if_unchanged(real: str, state: _FileState, data: bytes) -> None:
    """Replace the file unless someone changed it since this run read it.

    A read-only file or directory is refused up front (an operator's ``chmod a-w`` means "do not
    write this", though a rename could replace it), and so is anything but a regular file.
    """
    directory = os.path.dirname(real)
    if os.path.exists(real):
        if not os.path.isfile(real):
            raise EnvFileUnavailable(f"cannot write {real}: not a regular file")
        if not os.access(real, os.W_OK):
            raise EnvFileUnavailable(f"cannot write {real}: permission denied")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise EnvFileUnavailable(f"cannot write {real}: directory {directory} is not writable")
    try:
        with open(real, "rb") as handle:
            current: bytes | None = handle.read()
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise _unavailable("read", real, exc) from None
    if current != state.data:
        raise EnvFileChanged(f"{real} changed during the run; nothing was written, retry")
    try:
        write_atomic(real, data)
    except OSError as exc:
        raise _unavailable("write", real, exc) from None


def env_sync_scheduled() -> EnvBridgeReport | None:
    """The beat/task entry point: ``env_sync`` on ``CONFIGSYNC_ENV_FILE``, ``None`` when unset."""
    if not app_settings.ENV_FILE:
        return None
    return env_sync()


__all__ = [
    "EnvBridgeReport",
    "SkippedVariable",
    "VariableChange",
    "env_bridge_path",
    "env_bridge_running",
    "env_diff",
    "env_export",
    "env_import",
    "env_sync",
    "env_sync_scheduled",
]
