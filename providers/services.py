"""Writes of ``AIProviderConfig``. Replication, caches and audit hook in by signals."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from configsync.exceptions import ConfigKeyError
from providers.models import AIProviderConfig
from providers.registry import OPTION_FIELDS, kind_get

_KEEP: Any = None


@transaction.atomic
def ai_provider_set(
    *,
    name: str,
    kind: str | None = None,
    enabled: bool | None = None,
    is_default: bool | None = None,
    **options: str | None,
) -> AIProviderConfig:
    """Create or update provider ``name``; return it.

    ``options`` are the fields of ``providers.registry.OPTION_FIELDS`` (``api_key``, ``base_url``,
    ...). ``None`` keeps the current value, ``""`` clears it; a kind's defaults fill fields left
    empty on create. Making one provider the default clears the flag on the others. Raises
    ``ValidationError`` (nothing saved) for an unknown kind, an unknown option or a field the kind
    requires or does not use; messages never contain the API key.
    """
    unknown = sorted(set(options) - set(OPTION_FIELDS))
    if unknown:
        raise ValidationError({field: "Unknown provider option." for field in unknown})
    record = AIProviderConfig.objects.select_for_update().filter(name=name).first()
    creating = record is None
    if record is None:
        if not kind:
            raise ValidationError({"kind": "Required when creating a provider."})
        record = AIProviderConfig(name=name)
    if kind is not None:
        record.kind = kind
    spec = kind_get(record.kind)
    for field, value in options.items():
        if value is not None:
            setattr(record, field, value)
    if creating:
        for field, default in spec.defaults.items():
            if not getattr(record, field):
                setattr(record, field, default)
    if enabled is not None:
        record.enabled = enabled
    if is_default is not None:
        record.is_default = is_default
    record.full_clean(exclude=["api_key"], validate_unique=creating)
    if record.is_default:
        for other in AIProviderConfig.objects.filter(is_default=True).exclude(name=name):
            other.is_default = False
            other.save(update_fields=["is_default", "updated_at"])
    record.save()
    return record


@transaction.atomic
def ai_provider_delete(*, name: str) -> None:
    """Delete provider ``name``; ``ConfigKeyError`` when it does not exist."""
    record = AIProviderConfig.objects.select_for_update().filter(name=name).first()
    if record is None:
        raise ConfigKeyError(name, kind="AI provider")
    record.delete()
