"""Reads of ``SystemConfig`` straight from the database (no cache)."""

from __future__ import annotations

from django.db.models import QuerySet

from configsync.exceptions import ConfigKeyError
from configsync.models import SystemConfig


def system_config_get(*, key: str) -> SystemConfig:
    """The record ``key``; ``ConfigKeyError`` when it does not exist."""
    try:
        return SystemConfig.objects.get(key=key)
    except SystemConfig.DoesNotExist:
        raise ConfigKeyError(key) from None


def system_config_list(
    *, category: str | None = None, is_sensitive: bool | None = None
) -> QuerySet[SystemConfig]:
    """All settings ordered by key, optionally filtered."""
    queryset = SystemConfig.objects.all()
    if category is not None:
        queryset = queryset.filter(category=category)
    if is_sensitive is not None:
        queryset = queryset.filter(is_sensitive=is_sensitive)
    return queryset.order_by("key")
