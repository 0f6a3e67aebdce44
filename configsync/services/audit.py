"""Writes of the audit trail. An audit event names who, what and when — never a value."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import models

from configsync.models import AuditEvent


def _reveal_event(actor: str, instance: models.Model) -> AuditEvent:
    natural_key = getattr(instance, type(instance).natural_key_field)  # type: ignore[attr-defined]
    return AuditEvent(
        actor=actor[:200],
        action=AuditEvent.Action.REVEAL,
        model_label=instance._meta.label_lower,
        natural_key=str(natural_key),
    )


def audit_reveal(*, actor: str, instance: models.Model) -> AuditEvent:
    """Record that ``actor`` was shown the plaintext of ``instance``'s sensitive value.

    Called before the plaintext leaves the process (e.g. before an API response is returned), so a
    reveal that cannot be audited does not happen: a database error propagates to the caller.
    """
    event = _reveal_event(actor, instance)
    event.save()
    return event


def audit_reveals(*, actor: str, instances: Sequence[models.Model]) -> list[AuditEvent]:
    """:func:`audit_reveal` for many records in one insert (a listing with reveal)."""
    return AuditEvent.objects.bulk_create([_reveal_event(actor, i) for i in instances])
