"""Writes of API keys. The plaintext key is returned once and stored only as a hash.

Each write is audited in its transaction (``configsync.services.audit.audit_action``): a key
created (``create_key``), changed (``change_key``, the names of the fields that changed),
revoked (``revoke_key``) or deleted (``delete_key``, the admin's delete), naming the key by name
and prefix — never the key — with the acting caller (``configsync.actor``) as actor. The
admin's revoke also leaves its Django ``LogEntry``.
If the event cannot be written, nothing is (``AuditWriteError``).

Each write goes through the model's ``save()``/``delete()``, whose signals drop the verified keys
the REST API caches (``configsync.api.authentication``) in this process at once and, once the
transaction commits, in every other one (``configsync.lookup``). Write keys only through these
services (or ``save()``/``delete()``): a ``QuerySet.update()`` would be seen by other processes
only after ``CONFIGSYNC_LOOKUP_MAX_AGE_SECONDS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from configsync.models import AuditEvent, ServiceAPIKey
from configsync.services.audit import audit_action


def _described(record: ServiceAPIKey, **extra: Any) -> dict[str, Any]:
    """A key as its audit events describe it: name, prefix and scopes (never the key)."""
    return {
        "name": record.name,
        "prefix": record.prefix,
        "scopes": list(record.scopes),
        "expires": record.expiry_date.isoformat() if record.expiry_date else None,
        **extra,
    }


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
    with transaction.atomic():
        created, key = ServiceAPIKey.objects.create_key(
            name=name, can_write=can_write, can_reveal=can_reveal, expiry_date=expiry_date
        )
        record = cast(ServiceAPIKey, created)
        audit_action(action=AuditEvent.Action.CREATE_KEY, details=_described(record))
    return record, key


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
    may be set in the past (the key stops working at once). Audited as ``revoke_key`` when it
    revokes, else ``change_key`` naming the changed fields (nothing when nothing changed).
    """
    record = ServiceAPIKey.objects.select_for_update().filter(prefix=prefix).first()
    if record is None:
        raise ValidationError({"prefix": "No API key has this prefix."})
    if record.revoked:
        raise ValidationError("The API key has been revoked, which cannot be undone.")
    wanted = {
        "name": _clean_name(name),
        "can_write": can_write,
        "can_reveal": can_reveal,
        "expiry_date": expiry_date,
        "revoked": revoked,
    }
    changed = sorted(field for field, value in wanted.items() if getattr(record, field) != value)
    for field, value in wanted.items():
        setattr(record, field, value)
    record.save(update_fields=list(wanted))
    if revoked:
        audit_action(action=AuditEvent.Action.REVOKE_KEY, details=_described(record))
    elif changed:
        audit_action(
            action=AuditEvent.Action.CHANGE_KEY, details=_described(record, changed=changed)
        )
    return record


@transaction.atomic
def api_key_revoke(*, prefix: str | None = None, name: str | None = None) -> ServiceAPIKey:
    """Revoke the key whose prefix is ``prefix``, or the one key named ``name`` that is not
    revoked yet; it stops authenticating at once (401 "API key revoked."), audited as
    ``revoke_key``. Revoking a revoked key changes nothing (and records nothing).
    ``ValidationError`` when no key matches, or when several keys not yet revoked share ``name``
    (their prefixes are listed: revoke by prefix).
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
        audit_action(action=AuditEvent.Action.REVOKE_KEY, details=_described(record))
    return record


@transaction.atomic
def api_key_delete(*, prefix: str) -> None:
    """Delete the key with this prefix (the admin's delete; revoking keeps the record and is
    the usual way). Audited as ``delete_key``. ``ValidationError`` when no key matches."""
    record = ServiceAPIKey.objects.select_for_update().filter(prefix=prefix).first()
    if record is None:
        raise ValidationError({"prefix": "No API key has this prefix."})
    details = _described(record, revoked=record.revoked)
    record.delete()
    audit_action(action=AuditEvent.Action.DELETE_KEY, details=details)
