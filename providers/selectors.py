"""Reads of ``AIProviderConfig``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from configsync.exceptions import ConfigKeyError
from providers.models import AIProviderConfig
from providers.registry import OPTION_FIELDS


def ai_provider_get(*, name: str) -> AIProviderConfig:
    """The provider ``name``; ``ConfigKeyError`` when it does not exist."""
    try:
        return AIProviderConfig.objects.get(name=name)
    except AIProviderConfig.DoesNotExist:
        raise ConfigKeyError(name, kind="AI provider") from None


def ai_provider_list(*, kind: str | None = None) -> QuerySet[AIProviderConfig]:
    """All providers ordered by name, optionally of one ``kind``."""
    queryset = AIProviderConfig.objects.all()
    if kind is not None:
        queryset = queryset.filter(kind=kind)
    return queryset.order_by("name")


def ai_config_get(*, name: str, field: str | None = None) -> Any:
    """Provider ``name``'s decrypted settings as a dict, or one ``field`` of it (uncached).

    ``providers.get_ai_config`` reads it through the in-process lookup cache.
    """
    record = ai_provider_get(name=name)
    data: dict[str, Any] = {name_: getattr(record, name_) for name_ in OPTION_FIELDS}
    data.update(
        name=record.name, kind=record.kind, enabled=record.enabled, is_default=record.is_default
    )
    if field is None:
        return data
    if field not in data:
        raise ConfigKeyError(f"{name}.{field}", kind="AI provider field")
    return data[field]
