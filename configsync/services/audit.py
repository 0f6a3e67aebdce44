"""Writes of the audit trail, and the rule that guards reveals in the services.

An audit event names who, what and when — never a value: a sensitive value appears only as a
keyed hash (:func:`audit_value_hash`). Events are written in the transaction of what they record,
so a change, a reveal or an action whose event cannot be written fails with it (fail closed).

Why our own trail rather than django-simple-history or django-auditlog: both copy field values
into their tables (auditlog's ``changes``, simple-history's shadow rows), which for our encrypted
fields would mean either plaintext in the trail or tokens bound to the wrong record; both hook
``post_save`` outside the replication apply path (which writes the feed in bulk) and neither
records the replication actor (a peer) or the entry point. The version history that rollback
needs is kept by replication in wire form (``RecordVersion``).

A write that would reveal a stored secret
to its caller (turn a sensitive setting plain, re-check a kept secret under another type) or send
it to a destination the caller chose (a provider's URL or kind) takes ``allow_reveal=True``, which
only callers holding the reveal right pass; the default refuses with :class:`RevealRequired`, so a
caller that forgets cannot leak.
"""

from __future__ import annotations

import hashlib
import hmac
import weakref
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, models, transaction

from configsync.actor import acting_now
from configsync.crypto.errors import ConfigsyncError
from configsync.crypto.keyring import Keyring, get_keyring
from configsync.models import AuditEvent
from configsync.selectors.audit import audit_hashed_field

VALUE_HASH_PREFIX = "hmac1"


class RevealRequired(PermissionDenied, ConfigsyncError):
    """A write needs the reveal right (or the secret re-entered). Nothing was changed.

    A ``PermissionDenied``: DRF answers 403 with the message; the CLI prints it and exits 1. The
    message says why and how to proceed; it never holds a value.
    """


class AuditWriteError(ConfigsyncError):
    """The audit trail could not be written, so what it would have recorded did not happen.

    Raised by every write of this module in place of the database's error (chained as its
    cause), inside the caller's transaction, which it rolls back: a change, a reveal or an action
    that cannot be audited fails (fail closed). The API answers it with a JSON ``503``, the
    command line with one line on stderr and exit 1. Its message names no value.
    """

    def __init__(self, what: str) -> None:
        super().__init__(
            f"the audit trail could not be written ({what}); nothing was done — try again later"
        )


def _insert(events: Sequence[AuditEvent], what: str) -> list[AuditEvent]:
    """Insert ``events`` in one statement, in a savepoint of the caller's transaction (so on
    PostgreSQL the caller's transaction stays usable for its own rollback), or raise
    :class:`AuditWriteError`."""
    if not events:
        return []
    try:
        with transaction.atomic():
            return AuditEvent.objects.bulk_create(events)
    except DatabaseError as exc:
        raise AuditWriteError(what) from exc


_hash_keys: weakref.WeakKeyDictionary[Keyring, dict[str, bytes]] = weakref.WeakKeyDictionary()


def _hash_key(keyring: Keyring, kid: str) -> bytes:
    """The HMAC key derived from key ``kid`` of ``keyring``: derived once per keyring (HKDF per
    call was what hashing a page of received secrets cost), afresh for a new keyring (the
    setting changed)."""
    derived = _hash_keys.setdefault(keyring, {})
    if kid not in derived:
        key = next(k for k in keyring.keys if k.kid == kid)
        derived[kid] = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"configsync audit value hash v1"
        ).derive(key.material)
    return derived[kid]


def audit_value_hash(value: str) -> str:
    """A keyed hash of a sensitive ``value``: ``hmac1:<key id>:<hex>``.

    HMAC-SHA256 under a key derived (HKDF, its own label) from the keyring's primary key, so it
    tells nothing to whoever lacks the key — unlike a plain hash, which a dictionary of likely
    secrets would open — yet the same value always gives the same hash under one key.
    """
    keyring = get_keyring()
    kid = keyring.primary.kid
    digest = hmac.new(_hash_key(keyring, kid), value.encode(), hashlib.sha256).hexdigest()
    return f"{VALUE_HASH_PREFIX}:{kid}:{digest}"


def audit_value_matches(stored: str, value: str) -> bool | None:
    """Whether ``value`` is the value ``stored`` (an :func:`audit_value_hash`) was made from;
    ``None`` when this node lacks the key it was made under (or ``stored`` is no such hash)."""
    prefix, _, rest = (stored or "").partition(":")
    kid, _, digest = rest.partition(":")
    keyring = get_keyring()
    if prefix != VALUE_HASH_PREFIX or kid not in keyring or not digest:
        return None
    expected = hmac.new(_hash_key(keyring, kid), value.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest)


def audit_value_check(*, event_id: int, field: str | None, value: str) -> bool | None:
    """Answer "was ``field`` set to ``value`` by audit event ``event_id``?" and record the question.

    ``field`` may be ``None`` when the event hashed one field only. Returns
    :func:`audit_value_matches`' answer (``None``: this node lacks the key). The question is an
    oracle on a secret, so the caller must hold the reveal right (the CLI's
    ``CONFIGSYNC_CLI_REVEAL``, the admin's staff rule) and it is itself audited (``check_value``:
    which event and field, the answer; never the value) before the answer is returned:
    :class:`AuditWriteError` if that cannot be written. ``ValidationError`` naming ``event`` or
    ``field`` when there is no such event, it hashed no value, or not that field.
    """
    event = AuditEvent.objects.filter(pk=event_id).first()
    if event is None:
        raise ValidationError({"event": f"No audit event has id {event_id}."})
    field = audit_hashed_field(event=event, field=field)
    match = audit_value_matches(event.value_hashes[field], value)
    answer = {True: "yes", False: "no", None: "unknown"}[match]
    _insert(
        [
            audit_event_build(
                action=AuditEvent.Action.CHECK_VALUE,
                model_label=event.model_label,
                natural_key=event.natural_key,
                details={"event": event.pk, "field": field, "answer": answer},
            )
        ],
        "value check",
    )
    return match


def audit_event_build(
    *,
    action: str,
    model_label: str = "",
    natural_key: str = "",
    actor: str | None = None,
    via: str | None = None,
    **fields: Any,
) -> AuditEvent:
    """An unsaved event stamped with this node's id and, unless given, the acting caller
    (``configsync.actor.acting_now``). ``fields``: ``origin_node``, ``hlc``, ``changed_fields``,
    ``value_hashes``, ``details``."""
    from configsync.services.node import node_id

    if actor is None or via is None:
        now = acting_now()
        actor = now.actor if actor is None else actor
        via = now.via if via is None else via
    return AuditEvent(
        actor=actor[:200],
        via=via,
        action=action,
        model_label=model_label,
        natural_key=natural_key[:255],
        node_id=node_id(),
        **fields,
    )


def audit_record(*, events: Sequence[AuditEvent]) -> None:
    """Write ``events`` in one insert, in the caller's transaction: if it fails, so does the
    caller's write (fail closed): :class:`AuditWriteError`."""
    _insert(events, "change")


CHANGE_ROW_FIELDS = (
    "actor",
    "via",
    "action",
    "model_label",
    "natural_key",
    "node_id",
    "origin_node",
    "hlc",
    "changed_fields",
    "value_hashes",
    "details",
    "created_at",
)
"""The fields of a change event as :func:`audit_changes_record` takes it, in this order."""


def audit_changes_record(*, rows: Sequence[Sequence[Any]]) -> None:
    """Write change events given as rows of :data:`CHANGE_ROW_FIELDS` in one statement
    (``configsync.bulk``: the history of a page of received changes), in the caller's
    transaction: if it fails, so does the caller's write (fail closed):
    :class:`AuditWriteError`, the transaction marked for rollback (no savepoint: that was two
    more round trips per page, and no caller goes on after the error).
    ``actor`` is at most 200 characters, ``natural_key`` 255."""
    if not rows:
        return
    from configsync.bulk import rows_insert

    meta = AuditEvent._meta
    try:
        with transaction.atomic(savepoint=False):
            rows_insert(
                model=AuditEvent,
                fields=[meta.get_field(name) for name in CHANGE_ROW_FIELDS],  # type: ignore[misc]
                rows=rows,
            )
    except DatabaseError as exc:
        raise AuditWriteError("change") from exc


def audit_action(
    *, action: str, details: dict[str, Any] | None = None, actor: str | None = None
) -> AuditEvent:
    """Record a node-wide action (a key rotation, a mode switch, an API key created, changed or
    revoked), in the caller's transaction: :class:`AuditWriteError` if it cannot be written."""
    event = audit_event_build(action=action, actor=actor, details=details or {})
    _insert([event], action)
    return event


def _reveal_event(actor: str, instance: models.Model) -> AuditEvent:
    natural_key = getattr(instance, type(instance).natural_key_field)  # type: ignore[attr-defined]
    return audit_event_build(
        actor=actor,
        action=AuditEvent.Action.REVEAL,
        model_label=instance._meta.label_lower,
        natural_key=str(natural_key),
    )


def audit_reveal(*, actor: str, instance: models.Model) -> AuditEvent:
    """Record that ``actor`` was shown the plaintext of ``instance``'s sensitive value.

    Called before the plaintext leaves the process (e.g. before an API response is returned), so a
    reveal that cannot be audited does not happen: :class:`AuditWriteError` propagates to the
    caller.
    """
    event = _reveal_event(actor, instance)
    _insert([event], "reveal")
    return event


def audit_reveal_written(*, model_label: str, natural_key: str) -> AuditEvent:
    """Record that the acting caller made readable a value the record's history masks (a
    rollback or a restore to a plain version of a setting that is, or was, sensitive), in the
    write's transaction: :class:`AuditWriteError` refuses the write with it."""
    event = audit_event_build(
        action=AuditEvent.Action.REVEAL, model_label=model_label, natural_key=natural_key
    )
    _insert([event], "reveal")
    return event


def audit_reveals(*, actor: str, instances: Sequence[models.Model]) -> list[AuditEvent]:
    """:func:`audit_reveal` for many records in one insert (a listing with reveal)."""
    return _insert([_reveal_event(actor, i) for i in instances], "reveal")
