"""Writes of API keys. The plaintext key is returned once and stored only as a hash."""

from __future__ import annotations

from typing import cast

from django.core.exceptions import ValidationError

from configsync.models import ServiceAPIKey


def api_key_create(
    *, name: str, can_write: bool = False, can_reveal: bool = False
) -> tuple[ServiceAPIKey, str]:
    """Create an API key named ``name`` with the given scopes (read is implied).

    Returns the record and the plaintext key (``<prefix>.<secret>``), which is never stored and
    cannot be shown again. ``ValidationError`` when ``name`` is empty or too long.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the key a name."})
    if len(name) > 50:
        raise ValidationError({"name": "At most 50 characters."})
    record, key = ServiceAPIKey.objects.create_key(
        name=name, can_write=can_write, can_reveal=can_reveal
    )
    return cast(ServiceAPIKey, record), key


def api_key_revoke(*, prefix: str) -> ServiceAPIKey:
    """Revoke the key whose prefix is ``prefix`` (it stops authenticating at once)."""
    try:
        record = ServiceAPIKey.objects.get(prefix=prefix)
    except ServiceAPIKey.DoesNotExist:
        raise ValidationError({"prefix": "No API key has this prefix."}) from None
    record.revoked = True
    record.save(update_fields=["revoked"])
    return record
