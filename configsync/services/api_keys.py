"""Writes of API keys. The plaintext key is returned once and stored only as a hash."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from configsync.models import ServiceAPIKey


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the key a name."})
    if len(name) > 50:
        raise ValidationError({"name": "At most 50 characters."})
    return name


def api_key_create(
    *,
    name: str,
    can_write: bool = False,
    can_reveal: bool = False,
    expiry_date: datetime | None = None,
) -> tuple[ServiceAPIKey, str]:
    """Create an API key named ``name`` with the given scopes (read is implied).

    ``expiry_date`` (aware, in the future) ends its use; ``None`` never expires. Returns the
    record and the plaintext key (``<prefix>.<secret>``), which is never stored and cannot be
    shown again. ``ValidationError`` when ``name`` is empty or too long, or the expiry is past.
    """
    name = _clean_name(name)
    if expiry_date is not None and expiry_date <= timezone.now():
        raise ValidationError({"expiry_date": "The expiry is in the past."})
    record, key = ServiceAPIKey.objects.create_key(
        name=name, can_write=can_write, can_reveal=can_reveal, expiry_date=expiry_date
    )
    return cast(ServiceAPIKey, record), key


@transaction.atomic
def api_key_update(
    *,
    prefix: str,
    name: str,
    can_write: bool,
    can_reveal: bool,
    expiry_date: datetime | None,
    revoked: bool,
) -> ServiceAPIKey:
    """Change the key with this prefix: name, scopes, expiry, revocation.

    A revoked key stays revoked and cannot be changed any more (``ValidationError``); an expiry
    may be set in the past (the key stops working at once).
    """
    record = ServiceAPIKey.objects.select_for_update().filter(prefix=prefix).first()
    if record is None:
        raise ValidationError({"prefix": "No API key has this prefix."})
    if record.revoked:
        raise ValidationError("The API key has been revoked, which cannot be undone.")
    record.name = _clean_name(name)
    record.can_write = can_write
    record.can_reveal = can_reveal
    record.expiry_date = expiry_date
    record.revoked = revoked
    record.save(update_fields=["name", "can_write", "can_reveal", "expiry_date", "revoked"])
    return record


@transaction.atomic
def api_key_revoke(*, prefix: str | None = None, name: str | None = None) -> ServiceAPIKey:
    """Revoke the key whose prefix is ``prefix``, or the one key named ``name`` that is not
    revoked yet; it stops authenticating at once (401 "API key revoked."). Revoking a revoked
    key changes nothing. ``ValidationError`` when no key matches, or when several keys not yet
    revoked share ``name`` (their prefixes are listed: revoke by prefix).
    """
    if (prefix is None) == (name is None):
        raise TypeError("api_key_revoke: give prefix or name, not both")
    if prefix is not None:
        try:
            record = ServiceAPIKey.objects.get(prefix=prefix)
        except ServiceAPIKey.DoesNotExist:
            raise ValidationError({"prefix": "No API key has this prefix."}) from None
    else:
        named = list(ServiceAPIKey.objects.filter(name=name).order_by("created"))
        if not named:
            raise ValidationError("No API key has this name or prefix.")
        live = [record for record in named if not record.revoked]
        if len(live) > 1:
            prefixes = ", ".join(record.prefix for record in live)
            raise ValidationError(
                {"name": f"{len(live)} API keys have this name; revoke one by prefix: {prefixes}."}
            )
        record = live[0] if live else named[-1]
    if not record.revoked:
        record.revoked = True
        record.save(update_fields=["revoked"])
    return record
