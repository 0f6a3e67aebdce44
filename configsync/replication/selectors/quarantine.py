"""Reads of quarantined replicated changes (``QuarantinedChange``)."""

from __future__ import annotations

import json

from django.db.models import QuerySet

from configsync.models import QuarantinedChange


def quarantine_list(
    *, status: str | None = QuarantinedChange.Status.OPEN
) -> QuerySet[QuarantinedChange]:
    """Quarantined changes, newest first; ``status=None`` for every status."""
    qs = QuarantinedChange.objects.all()
    return qs if status is None else qs.filter(status=status)


def quarantine_open_count() -> int:
    """How many quarantined changes wait for a retry or an operator."""
    return QuarantinedChange.objects.filter(status=QuarantinedChange.Status.OPEN).count()


def quarantine_retryable_keys() -> dict[str, set[str]]:
    """Per model label, the keys named by quarantined changes that may still be retried (open, or
    dropped: an operator may retry those), as the items named them (from the payload, so a key
    the row shows escaped is matched as the record stores it)."""
    keys: dict[str, set[str]] = {}
    for payload in QuarantinedChange.objects.exclude(
        status=QuarantinedChange.Status.APPLIED
    ).values_list("payload", flat=True):
        try:
            item = json.loads(payload)
        except ValueError:
            continue
        if isinstance(item, dict):
            label, key = item.get("model"), item.get("key")
            if isinstance(label, str) and isinstance(key, str):
                keys.setdefault(label.lower(), set()).add(key)
    return keys
