"""Writes of the audit trail, and the rule that guards reveals in the services.

An audit event names who, what and when — never a value. A write that would reveal a stored secret
to its caller (turn a sensitive setting plain, re-check a kept secret under another type) or send
it to a destination the caller chose (a provider's URL or kind) takes ``allow_reveal=True``, which
only callers holding the reveal right pass; the default refuses with :class:`RevealRequired`, so a
caller that forgets cannot leak.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import PermissionDenied
from django.db import models

from configsync.crypto.errors import ConfigsyncError
from configsync.models import AuditEvent


class RevealRequired(PermissionDenied, ConfigsyncError):
    """A write needs the reveal right (or the secret re-entered). Nothing was changed.

    A ``PermissionDenied``: DRF answers 403 with the message; the CLI prints it and exits 1. The
    message says why and how to proceed; it never holds a value.
    """


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
