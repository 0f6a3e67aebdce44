"""Liveness of this node's dependencies: database, cache and Celery broker.

Each check answers ``{"ok": bool, ...}`` with the backend's kind and, on failure, the error's
class name: never a URL, host or credential.
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
    """A connection to the Celery broker, given ``BROKER_TIMEOUT_SECONDS`` at most."""
    from settings.celery import app

    transport = str(getattr(settings, "CELERY_BROKER_URL", "")).split(":", 1)[0] or "unknown"
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
            )
    except Exception as exc:
        return {"transport": transport, **_failure(exc)}
    return {"ok": True, "transport": transport}


def health_check() -> dict[str, Any]:
    """``{"status": "ok"|"error", "components": {"database", "cache", "broker"}}``."""
    components = {
        "database": health_database(),
        "cache": health_cache(),
        "broker": health_broker(),
    }
    ok = all(component["ok"] for component in components.values())
    return {"status": "ok" if ok else "error", "components": components}
