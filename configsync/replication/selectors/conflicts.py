"""Reads of the conflicts kept on this node (values never leave: only names and versions)."""

from __future__ import annotations

from django.db.models import QuerySet

from configsync.models import Conflict


def conflicts_list(*, status: str | None = None) -> QuerySet[Conflict]:
    """Conflicts, newest first, optionally only ``open`` or ``resolved`` ones."""
    queryset = Conflict.objects.all()
    if status:
        queryset = queryset.filter(status=status)
    return queryset
