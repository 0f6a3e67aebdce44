"""Liveness of this node's dependencies (database, cache, Celery broker) and of its clock.

Each check answers ``{"ok": bool, ...}`` with the backend's kind and, on failure, the error's
class name: never a URL, host, credential or peer name.

The clock check (``selectors.status.clock_assess``) fails when this node's clock is out of
bounds: the timestamps it issues are more than ``CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS`` ahead of its
physical clock or of a peer's, so its peers hold its changes. The node still serves reads and
writes correctly, so a plain health check reports it (``"status": "degraded"``) and still answers
200 — a load balancer taking the node out would take configuration away from its clients for a
problem that does not affect them; the strict check (``?strict=1``, for monitoring) answers 503.

**Heartbeats** (``worker`` and ``beat``: the processes that replicate). Beat sends the task
``configsync.tasks.heartbeat`` every :func:`heartbeat_interval_seconds`; the beat process records
its own heartbeat when it starts and whenever it sends a task (``beat_init`` /
``beat_embedded_init`` and ``before_task_publish`` in ``configsync.tasks``), the worker records
its heartbeat when it runs that task (and a starting worker enqueues one at once). The worker's
heartbeat so proves the whole path a sync takes: broker, consumer, pool, database settings. A
heartbeat older than :data:`HEARTBEAT_STALE_INTERVALS` intervals (or none yet) makes the node
``degraded`` (200: the node still serves configuration) and, with ``?strict=1``, ``error``
(503): a load balancer or orchestrator takes out or restarts a node that no longer replicates.
When beat is down no heartbeat task is sent, so the worker's heartbeat ages too: the beat's
age then tells which one stopped.

Where heartbeats are kept (:func:`heartbeat_record`): in Redis (the default cache) when
``REDIS_URL`` is set, which every process of the node shares even across hosts; otherwise in
``<CONFIGSYNC_VAR_DIR>/heartbeats/<role>``, one small file per role written atomically, which
web, worker and beat of a node without Redis share already (the embedded broker and the file
locks live there too). Not the database: a write every interval from two processes is needless
contention on SQLite, and it would need a model and a migration for a timestamp. Not the
local-memory cache: it is per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connection

from configsync.conf import DEFAULTS, app_settings

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2.0
HEARTBEAT_ROLES = ("worker", "beat")
HEARTBEAT_MAX_INTERVAL_SECONDS = 60
"""The longest heartbeat interval, whatever ``CONFIGSYNC_SYNC_INTERVAL_SECONDS`` says: a node
syncing hourly still tells within two minutes that its worker is gone."""
HEARTBEAT_STALE_INTERVALS = 2
"""A heartbeat older than this many intervals is stale."""


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": type(exc).__name__}


def health_database() -> dict[str, Any]:
    """``SELECT 1`` on the default database."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"vendor": connection.vendor, **_failure(exc)}
    return {"ok": True, "vendor": connection.vendor}


def health_cache() -> dict[str, Any]:
    """A set and a get of a throwaway key in the default cache."""
    cache = caches["default"]
    backend = type(cache).__name__
    key = f"configsync:health:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", timeout=10)
        ok = cache.get(key) == "1"
        cache.delete(key)
    except Exception as exc:
        return {"backend": backend, **_failure(exc)}
    return {"ok": ok, "backend": backend} if ok else {"ok": False, "backend": backend}


def health_broker() -> dict[str, Any]:
    """A connection to the Celery broker, given ``BROKER_TIMEOUT_SECONDS`` at most.

    The broker is the current Celery application's (the project's, set as current when the
    project's Celery app is created): the app never imports the project.
    """
    from celery import current_app as app

    transport = str(getattr(settings, "CELERY_BROKER_URL", "")).split(":", 1)[0] or "unknown"
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
            )
    except Exception as exc:
        return {"transport": transport, **_failure(exc)}
    return {"ok": True, "transport": transport}


def heartbeat_interval_seconds() -> int:
    """How often beat sends the heartbeat task: ``CONFIGSYNC_SYNC_INTERVAL_SECONDS``, at most
    :data:`HEARTBEAT_MAX_INTERVAL_SECONDS`; the default interval when the periodic sync is off
    (0): beat and worker still run pushes, the .env bridge and retries."""
    interval = app_settings.sync_interval_seconds
    if interval <= 0:
        interval = int(DEFAULTS["SYNC_INTERVAL_SECONDS"])
    return max(1, min(interval, HEARTBEAT_MAX_INTERVAL_SECONDS))


def _heartbeat_path(role: str) -> Path:
    return Path(app_settings.var_dir) / "heartbeats" / role


def _heartbeat_cache_key(role: str) -> str:
    return f"heartbeat:{role}"


def _heartbeats_in_redis() -> bool:
    return bool(getattr(settings, "REDIS_URL", ""))


def heartbeat_record(*, role: str, at: float | None = None) -> None:
    """Record that ``role`` (``worker`` or ``beat``) is alive, at ``at`` (Unix time; now by
    default). Never raises: a heartbeat that cannot be written is logged, and health reports
    the last one written."""
    if role not in HEARTBEAT_ROLES:
        raise ValueError(f"unknown heartbeat role {role!r}")
    timestamp = time.time() if at is None else float(at)
    try:
        if _heartbeats_in_redis():
            caches["default"].set(_heartbeat_cache_key(role), timestamp, timeout=None)
            return
        path = _heartbeat_path(role)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{role}.{os.getpid()}.{uuid.uuid4().hex}")
        try:
            temporary.write_text(repr(timestamp))
            os.replace(temporary, path)  # a reader sees a whole timestamp, never a partial one
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
    except Exception as exc:
        logger.warning("could not record the %s heartbeat: %s", role, type(exc).__name__)


def heartbeat_read(*, role: str) -> float | None:
    """When ``role`` last recorded its heartbeat (Unix time); ``None`` when never or unreadable
    (a cache that does not answer raises)."""
    try:
        if _heartbeats_in_redis():
            value = caches["default"].get(_heartbeat_cache_key(role))
        else:
            value = _heartbeat_path(role).read_text()
        return None if value is None else float(value)
    except (OSError, ValueError, TypeError):
        return None


def health_heartbeat(role: str, *, now: float | None = None) -> dict[str, Any]:
    """``role``'s heartbeat: its age in seconds (``None``: never seen) and whether it is within
    :data:`HEARTBEAT_STALE_INTERVALS` intervals."""
    max_age = HEARTBEAT_STALE_INTERVALS * heartbeat_interval_seconds()
    try:
        at = heartbeat_read(role=role)
    except Exception as exc:  # the cache is down: the cache component says so too
        return {"age_seconds": None, "max_age_seconds": max_age, **_failure(exc)}
    age = None if at is None else max(0.0, (time.time() if now is None else now) - at)
    return {
        "ok": age is not None and age <= max_age,
        "age_seconds": None if age is None else round(age, 1),
        "max_age_seconds": max_age,
    }


def health_clock() -> dict[str, Any]:
    """This node's clock: ``ok`` false when out of bounds (figures only, no peer names)."""
    from configsync.replication.selectors.status import (
        CLOCK_OUT_OF_BOUNDS,
        clock_status,
        latest_peer_skews,
    )

    try:
        skews = latest_peer_skews()
        clock = clock_status(peer_skews=skews)
    except Exception as exc:
        return _failure(exc)
    known = [skew for skew in skews.values() if skew is not None]
    report: dict[str, Any] = {
        "ok": clock.state != CLOCK_OUT_OF_BOUNDS,
        "state": clock.state,
        "hlc_ahead_ms": clock.hlc_ahead_ms,
        "max_peer_skew_ms": max(known, key=abs) if known else None,
        "max_skew_ms": clock.max_skew_ms,
    }
    if clock.state == CLOCK_OUT_OF_BOUNDS:
        report["recovery"] = "fix this machine's clock (NTP); details: configsync status"
    return report


def health_check(*, strict: bool = False) -> dict[str, Any]:
    """``{"status": "ok"|"degraded"|"error", "components": {...}}``.

    ``error``: database, cache or broker failed (and, with ``strict``, the clock, the worker's
    or beat's heartbeat too); ``degraded``: only the clock is out of bounds or a heartbeat is
    stale (see the module docstring).
    """
    components = {
        "database": health_database(),
        "cache": health_cache(),
        "broker": health_broker(),
    }
    ok = all(component["ok"] for component in components.values())
    components["clock"] = health_clock() if components["database"]["ok"] else {"ok": False}
    now = time.time()
    for role in HEARTBEAT_ROLES:
        components[role] = health_heartbeat(role, now=now)
    soft_ok = all(bool(components[name]["ok"]) for name in ("clock", *HEARTBEAT_ROLES))
    state = "ok" if soft_ok else "degraded"
    if not ok or (strict and not soft_ok):
        state = "error"
    return {"status": state, "components": components}
