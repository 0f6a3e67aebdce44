"""Writes of ``SystemConfig``. Replication, caches and the audit trail hook in by signals."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from configsync.conf import app_settings
from configsync.exceptions import ConfigKeyError
from configsync.models import SystemConfig
from configsync.value_types import value_serialize

_UNSET: Any = object()


@transaction.atomic
def system_config_set(
    *,
    key: str,
    value: Any,
    value_type: str | None = None,
    is_sensitive: bool | None = None,
    category: str | None = None,
    description: str | None = None,
) -> SystemConfig:
    """Create or update the setting ``key``; return it.

    ``value`` may be typed (``42``, ``True``, a dict for json) or text to parse. Arguments left as
    ``None`` keep the record's current attribute (or the default on create). A sensitive value is
    stored only as ciphertext. Raises ``ValidationError`` (nothing saved) when the key, type or
    value is invalid; the message never contains the value.
    """
    record = SystemConfig.objects.select_for_update().filter(key=key).first()
    creating = record is None
    if record is None:
        record = SystemConfig(key=key)
    if value_type is not None:
        record.value_type = value_type
    if is_sensitive is not None:
        record.is_sensitive = is_sensitive
    if category is not None:
        record.category = category
    if description is not None:
        record.description = description

    try:
        text = value_serialize(value, record.value_type)
    except ValidationError as exc:
        raise ValidationError({"value": exc.messages}) from None
    if len(text.encode()) > app_settings.MAX_VALUE_BYTES:
        raise ValidationError({"value": f"Longer than {app_settings.MAX_VALUE_BYTES} bytes."})
    if record.is_sensitive:
        record.value = ""
        record.secret_value = text
    else:
        record.value = text
        record.secret_value = None
    record.full_clean(validate_unique=creating)
    record.save()
    return record


@transaction.atomic
def system_config_delete(*, key: str) -> None:
    """Delete the setting ``key``; ``ConfigKeyError`` when it does not exist."""
    record = SystemConfig.objects.select_for_update().filter(key=key).first()
    if record is None:
        raise ConfigKeyError(key)
    record.delete()
