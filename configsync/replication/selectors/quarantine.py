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
