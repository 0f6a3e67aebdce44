"""The history and the audit trail of every change of a replicated record.

:func:`history_record` is called in the transaction of every change of a record's current version
on this node — a local write (``services.local``, which restore, rollback, conflict resolution,
the ``.env`` bridge, the admin, the API and the CLI all go through) and a change applied from a
peer (``services.apply``) — so no entry point can change a record without leaving its version in
the history (``RecordVersion``, the newest ``CONFIGSYNC_HISTORY_VERSIONS`` kept) and an
``AuditEvent``. Both are written with the change: if either insert fails, the change fails
(fail closed). Who acted comes from ``configsync.actor`` unless the caller names it (a peer).

Values stay in wire form (ciphertext for secrets) in the history. The audit event holds the names
of the changed fields and, for each sensitive field of the new version, a keyed hash of its
value (``configsync.services.audit.audit_value_hash``); the plaintext is decrypted for that in
memory only, and a token this node cannot read is hashed as ``"unreadable"``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Max, Q
from django.utils import timezone

from configsync.actor import acting_now
from configsync.bulk import JSONText, rows_insert, value_set
from configsync.conf import app_settings
from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import get_keyring
from configsync.logging import register_secret
from configsync.models import AuditEvent, RecordVersion, ReplicatedRecord
from configsync.replication import registry
from configsync.services.audit import audit_changes_record, audit_value_hash
from configsync.services.node import node_id

UNREADABLE = "unreadable"

_details: ContextVar[dict[str, Any] | None] = ContextVar("configsync_history_details", default=None)


@contextmanager
def history_details(**details: Any) -> Iterator[None]:
    """Add ``details`` (JSON-able, never a value) to the audit event of every change recorded in
    the block, e.g. ``history_details(rolled_back_to=3)`` around a rollback's write. Nested
    blocks merge, the inner one winning."""
    token = _details.set({**(_details.get() or {}), **details})
    try:
        yield
    finally:
        _details.reset(token)


class VersionRow(NamedTuple):
    """A record's version as the history keeps it (what ``Changed.record`` must carry)."""

    model_label: str
    natural_key: str
    hlc: str
    origin_node: str
    deleted: bool
    data: dict[str, Any] | None
    encoded: JSONText | None = None
    """``data`` already encoded as JSON, when the caller has it (written as it is)."""


@dataclass(frozen=True)
class Changed:
    """One change of a record's current version: ``record`` holds the new version (its ``hlc``,
    ``origin_node``, ``deleted`` and ``data``: a ``ReplicatedRecord`` or a :class:`VersionRow`);
    ``before`` is the wire form of the version it replaced (``None`` when there was no live one:
    a create, or a write over a tombstone)."""

    record: ReplicatedRecord | VersionRow
    before: dict[str, Any] | None


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """The wire fields whose values differ between two versions (all of ``after``'s for a
    create, none for a delete). A sensitive field's token is kept while its value is unchanged
    (``registry.ReplicatedModel.serialize``), so comparing tokens compares values."""
    if after is None:
        return []
    before = before or {}
    return sorted(name for name, value in after.items() if before.get(name) != value)


def value_hashes(
    rm: registry.ReplicatedModel, key: str, data: dict[str, Any] | None
) -> dict[str, str]:
    """Per sensitive field of ``data`` holding a value: its keyed hash (never the value)."""
    if not data:
        return {}
    hashes: dict[str, str] = {}
    keyring = None
    for name in rm.encrypted_fields:
        token = data.get(name)
        if not token:
            continue
        try:
            keyring = keyring or get_keyring()
            plain = keyring.decrypt(
                str(token),
                context=encryption_context_for(
                    model_label=rm.label, field_name=name, natural_key=key
                ),
            )
        except Exception:  # a key this node lacks, or no keyring: still recorded, unhashed
            hashes[name] = UNREADABLE
            continue
        register_secret(plain)
        hashes[name] = audit_value_hash(plain)
    return hashes


def _latest_numbers(label: str, keys: list[str]) -> list[tuple[str, int]]:
    """``(natural key, latest version number)`` of the records of ``keys`` that have versions:
    one index probe per key (on PostgreSQL whatever the table's statistics say, as
    ``configsync.bulk.rows_by_keys``)."""
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(RecordVersion._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT k.key, (SELECT max(v.number) FROM {table} v "  # noqa: S608
                "WHERE v.model_label = %s AND v.natural_key = k.key) AS n "
                "FROM jsonb_array_elements_text(%s::jsonb) AS k(key)",
                [label, json.dumps(sorted(set(keys)))],
            )
            return [(key, number) for key, number in cursor.fetchall() if number is not None]
    return list(
        RecordVersion.objects.filter(model_label=label, natural_key__in=value_set(keys))
        .values_list("natural_key")
        .annotate(n=Max("number"))
        .order_by()
    )


def _action(change: Changed) -> str:
    if change.record.deleted:
        return AuditEvent.Action.DELETE
    return AuditEvent.Action.UPDATE if change.before is not None else AuditEvent.Action.CREATE


def history_record(
    *, changes: Sequence[Changed], actor: str | None = None, via: str | None = None
) -> None:
    """Keep the new version of every record in ``changes`` and audit each change.

    Runs in the caller's transaction, which must hold the records' replication rows locked
    (both callers do), so version numbers are issued without races: three queries for the
    whole batch (the latest numbers, the inserts, the pruning) plus the audit insert, both
    inserts set-wise (``configsync.bulk``).
    ``actor``/``via`` default to ``configsync.actor.acting_now()``; the events' ``details`` are
    ``{"version": number}`` plus whatever an enclosing :func:`history_details` adds.
    """
    if not changes:
        return
    if actor is None or via is None:
        now = acting_now()
        actor = now.actor if actor is None else actor
        via = now.via if via is None else via
    actor = actor[:200]
    by_label: dict[str, list[str]] = {}
    for change in changes:
        by_label.setdefault(change.record.model_label, []).append(change.record.natural_key)
    latest: dict[tuple[str, str], int] = {}
    for label, keys in by_label.items():
        for key, number in _latest_numbers(label, keys):
            latest[(label, key)] = number
    keep = max(1, int(app_settings.HISTORY_VERSIONS))
    stamped = timezone.now()
    here = node_id()
    extra = _details.get() or {}
    versions: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    prune = Q()
    for change in changes:
        record = change.record
        label, key = record.model_label, record.natural_key
        ident = (label, key)
        number = latest.get(ident, 0) + 1
        latest[ident] = number
        versions.append(
            (
                label,
                key,
                number,
                record.hlc,
                record.origin_node,
                record.deleted,
                getattr(record, "encoded", None) or record.data,
                actor,
                via,
                stamped,
            )
        )
        if number > keep:
            prune |= Q(model_label=label, natural_key=key, number__lte=number - keep)
        events.append(
            (
                actor,
                via,
                _action(change),
                label,
                key[:255],
                here,
                record.origin_node,
                record.hlc,
                _encoded_names(changed_fields(change.before, record.data)),
                value_hashes(registry.get(label), key, record.data) or _EMPTY,
                {**extra, "version": number} if extra else JSONText(f'{{"version": {number}}}'),
                stamped,
            )
        )
    meta = RecordVersion._meta
    rows_insert(
        model=RecordVersion,
        fields=[meta.get_field(name) for name in _VERSION_FIELDS],  # type: ignore[misc]
        rows=versions,
    )
    if prune:
        RecordVersion.objects.filter(prune).delete()
    audit_changes_record(rows=events)


_EMPTY = JSONText("{}")


@functools.lru_cache(maxsize=256)
def _encoded_names_of(names: tuple[str, ...]) -> JSONText:
    return JSONText(json.dumps(list(names)))


def _encoded_names(names: list[str]) -> JSONText:
    """A list of field names as JSON (a page's changes name the same few lists)."""
    return _encoded_names_of(tuple(names))


_VERSION_FIELDS = (
    "model_label",
    "natural_key",
    "number",
    "hlc",
    "origin_node",
    "deleted",
    "data",
    "actor",
    "via",
    "recorded_at",
)
