"""Reads of quarantined replicated changes (``QuarantinedChange``)."""

from __future__ import annotations

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
    dropped: an operator may retry those). Read from the row's columns, not its payload: any key
    a record can have (ASCII, no quote or backslash) is stored there unescaped."""
    keys: dict[str, set[str]] = {}
    rows = (
        QuarantinedChange.objects.exclude(status=QuarantinedChange.Status.APPLIED)
        .order_by()
        .values_list("model_label", "natural_key")
        .distinct()
    )
    for label, key in rows:
        keys.setdefault(label.lower(), set()).add(key)
    return keys
