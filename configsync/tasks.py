"""Celery tasks and the beat schedule (schedules are code, built from ``configsync.conf``).

Tasks take ids, reload, call a service, are safe to re-run and retry with backoff.
"""

from __future__ import annotations

from typing import Any


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The periodic tasks of this node; empty entries are left out when disabled."""
    return {}
