"""Liveness of this node's dependencies (database, cache, Celery broker) and of its clock.

Each check answers ``{"ok": bool, ...}`` with the backend's kind and, on failure, the error's
class name: never a URL, host, credential or peer name.

The clock check (``selectors.status.clock_assess``) fails when this node's clock is out of
bounds: the timestamps it issues are more than ``CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS`` ahead of its
physical clock or of a peer's, so its peers hold its changes. The node still serves reads and
writes correctly, so a plain health check reports it (``"status": "degraded"``) and still answers
200 — a load balancer taking the node out would take configuration away from its clients for a
problem that does not affect them; the strict check (``?strict=1``, for monitoring) answers 503.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connection

BROKER_TIMEOUT_SECONDS = 2.0


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

    ``error``: database, cache or broker failed (and, with ``strict``, the clock too);
    ``degraded``: only the clock is out of bounds (see the module docstring).
    """
    components = {
        "database": health_database(),
        "cache": health_cache(),
        "broker": health_broker(),
    }
    ok = all(component["ok"] for component in components.values())
    components["clock"] = health_clock() if components["database"]["ok"] else {"ok": False}
    clock_ok = bool(components["clock"]["ok"])
    state = "ok" if clock_ok else "degraded"
    if not ok or (strict and not clock_ok):
        state = "error"
    return {"status": state, "components": components}
