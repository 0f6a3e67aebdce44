"""Writes of the audit trail. An audit event names who, what and when — never a value."""

from __future__ import annotations

from django.db import models

from configsync.models import AuditEvent


def audit_reveal(*, actor: str, instance: models.Model) -> AuditEvent:
    """Record that ``actor`` was shown the plaintext of ``instance``'s sensitive value.

    Called before the plaintext leaves the process (e.g. before an API response is returned), so a
    reveal that cannot be audited does not happen: a database error propagates to the caller.
    """
    natural_key = getattr(instance, type(instance).natural_key_field)  # type: ignore[attr-defined]
    return AuditEvent.objects.create(
        actor=actor[:200],
        action=AuditEvent.Action.REVEAL,
        model_label=instance._meta.label_lower,
        natural_key=str(natural_key),
    )
