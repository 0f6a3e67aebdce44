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

The run is made of: ``plan`` (read both sides, decide per variable), ``apply`` (database
changes, bases, conflicts), ``files`` (read once, atomic replace) and ``report`` (what it did).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator

from django.db import transaction

from configsync.conf import app_settings
from configsync.envbridge import files
from configsync.envbridge import plan as plan_module
from configsync.envbridge.apply import FILE_NODE, plan_apply
from configsync.envbridge.errors import EnvConfigError, EnvFileUnavailable, EnvLockTimeout
from configsync.envbridge.merge import Action, Mode
from configsync.envbridge.plan import MODEL_LABEL, VariablePlan, change_of, plan_variable
from configsync.envbridge.policy import BridgePolicy
from configsync.envbridge.report import EnvBridgeReport, SkippedVariable, VariableChange
from configsync.locks import named_lock
from configsync.models import EnvBridgeBase, SystemConfig

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_SECONDS = 300
LOCK_WAIT_SECONDS = 60

_running: contextvars.ContextVar[bool] = contextvars.ContextVar("env_bridge_running", default=False)


def env_bridge_running() -> bool:
    """Whether this thread is inside a bridge run (its own changes need no further export)."""
    return _running.get()


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


def _run_locked(*, real: str, policy: BridgePolicy, mode: Mode, dry_run: bool) -> EnvBridgeReport:
    report = EnvBridgeReport(path=real, mode=mode, dry_run=dry_run)
    state = files.file_read(real)
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
    replicated = plan_module.replicated_rows({policy.key_for(n) for n in names})

    plans: list[VariablePlan] = []
    for name in names:
        plan = plan_variable(
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
        report.changes = [change_of(p) for p in plans if p.decision.action is not Action.NONE]
        return report

    with transaction.atomic():
        for name, row in bases.items():
            if name not in managed_bases:
                row.delete()  # the variable left the managed set: forget it was managed
        for plan in plans:
            base_row = managed_bases.get(plan.name)
            if plan_apply(plan, base_row, document=document, real=real, state=state, report=report):
                report.changes.append(change_of(plan))
        new_data = document.render().encode("utf-8")
        if new_data != (state.data if state.data is not None else b""):
            files.file_write_if_unchanged(real, state, new_data)
            report.file_written = True
    if report.changes or report.skipped:
        logger.info("%s", report.summary())
    return report


def env_sync_scheduled() -> EnvBridgeReport | None:
    """The beat/task entry point: ``env_sync`` on ``CONFIGSYNC_ENV_FILE``, ``None`` when unset."""
    if not app_settings.ENV_FILE:
        return None
    return env_sync()


__all__ = [
    "FILE_NODE",
    "MODEL_LABEL",
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
