"""Encryption keys: generation, usage report and rotation of every encrypted value.

Rotation re-encrypts each token that is not on the primary (first) key of
``CONFIGSYNC_ENCRYPTION_KEYS``. It is maintenance, not a change of the value:

* rows are written with plain ``UPDATE`` statements of the new token only, so no ``save()`` runs,
  no signal fires, ``updated_at`` and the record's version token stay as they were, and nothing
  replicates because of it;
* rows are walked by primary key in batches, one transaction per batch, each batch's rows locked
  by one ``SELECT … FOR UPDATE`` so a concurrent write is never overwritten with the older value
  (it waits for the batch, or the batch waits for it and reads its value);
* the change feed's stored wire form of the record (``ReplicatedRecord.data``) gets the same new
  token, in the same transaction and without a new version, so peers are never served tokens of
  a key about to be removed and the row and its feed copy stay byte-identical;
* the versions kept in conflicts (``Conflict.local_version``/``remote_version``, wire form) are
  re-encrypted too: resolving an old conflict writes its token back into the record, so it must
  still be readable once the old key is dropped. A kept version's token is bound to the record
  it belongs to (the conflict's model label and natural key and the wire form's field name),
  exactly as if the record held it;
* the versions kept in the history (``RecordVersion.data``, what ``configsync rollback`` writes
  back) are re-encrypted the same way; within a run one old token gets one new token (up to
  ``_MEMO_MAX`` remembered), so versions that shared a token (an unchanged secret) still share
  one, and the current version usually gets the very token its row got;
* the feed copies of registered models' *sensitive* fields (``auth.user.password``: plain in
  its row, sealed only in the feed) are rotated the same way;
* it is idempotent: a token already on the primary key is left alone, so an interrupted run is
  resumed by running it again;
* a token no configured key can decrypt is reported (model, field, natural key and the reason,
  never a value) and skipped; the rest is still rotated;
* every run (complete or stopped early) writes one ``AuditEvent`` (``action="rotate_keys"``)
  whose details hold the counts, the primary key id and whether it completed.

**Set-based.** A batch of a model's rows is three statements whatever its size: the locking
select, one ``UPDATE`` of the rows from the set of ``(pk, old token, new token)`` and one of the
feed copies (per encrypted field; ``jsonb_set``/``json_set`` in the database, matched by model
and natural key). Every ``UPDATE`` writes a token only where the copy still holds the token read
(``_update_from_set``: PostgreSQL gets the set as one JSON array parameter, SQLite one
``executemany``). The kept versions are one walk (:class:`_KeptVersions`): a locking select that
reads each token-holding field's string in the database (``#>>``/``json_extract``, no wire form
parsed in Python) and one ``UPDATE`` per such field per batch. The keyring keeps one AES-GCM
object per key (built once, not per token).

**Why the feed keeps its own copy of each token** (issue 14 asked whether the feed could serve
the model row's token instead, storing it once). It would not store it once: the history keeps
the current version with the same token (at least one version per record, and rotation rewrites
it anyway), so dropping the feed copy turns three writes per record into two, not one. A
sensitive field (``auth.user.password``) has no token in its row at all, so the feed copy stays
for it either way. And ``ReplicatedRecord.data`` is the version, not a cache of the row: a local
save is a new version only when its wire form differs from it (``services.local``; without the
token there, a save changing only a secret would have to read the row's old token first, on
every write), the history's changed fields, snapshots and the unreadable flag read it, and
serving the row's token would make every feed page join each model table it names, in the same
statement as the metadata (two queries under READ COMMITTED could pair one version's HLC with the
next version's token), on the replication hot path. ``python -m bench rotation`` measures both
sides in one run: the feed copy's ``UPDATE`` is about a quarter of rotation's time, and joining
a page of 1,000 feed rows to their model rows for the tokens makes the page read 1.3-2x slower
(see docs/architecture.md, "Rotation"). Rotation is rare maintenance; the feed is read on every
sync cycle.

Every model with an :class:`~configsync.crypto.fields.EncryptedTextField` is found through
``django.apps``, so models added later (users, a deployment's own models) rotate too.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models.expressions import RawSQL

from configsync.conf import app_settings
from configsync.crypto.fields import EncryptedTextField, encryption_context_for
from configsync.crypto.keyring import (
    TOKEN_PREFIX,
    TokenError,
    generate_key,
    get_keyring,
    token_key_id,
)
from configsync.models import AuditEvent, Conflict, RecordVersion, ReplicatedRecord
from configsync.replication import registry
from configsync.services.audit import audit_action

logger = logging.getLogger(__name__)

_MEMO_MAX = 100_000
"""How many old token → new token pairs a run remembers (about 50 MB)."""


@dataclass(frozen=True)
class UnreadableValue:
    """One stored token that cannot be decrypted with the configured keys (no value in it)."""

    model: str
    field: str
    record: str
    reason: str

    def __str__(self) -> str:
        return f"{self.model}.{self.field} of {self.record!r}: {self.reason}"


@dataclass
class RotationReport:
    """What one ``keys_rotate`` run did. ``complete`` is false when stopped by ``max_batches``.

    ``scanned`` counts records (rows, feed copies of sealed fields, conflicts and history
    versions); ``rotated``, ``already_current`` and ``unreadable`` count tokens, those of kept
    versions included (a row's feed copy is the row's token, not counted again).
    """

    primary_key_id: str
    scanned: int = 0
    rotated: int = 0
    already_current: int = 0
    batches: int = 0
    complete: bool = False
    unreadable: list[UnreadableValue] = field(default_factory=list)


@dataclass
class KeyUsageReport:
    """How many stored tokens use each key id; ``unknown`` are ids no configured key has."""

    primary_key_id: str
    configured_key_ids: list[str]
    tokens_by_key_id: dict[str, int]

    @property
    def unknown_key_ids(self) -> list[str]:
        return sorted(set(self.tokens_by_key_id) - set(self.configured_key_ids))

    @property
    def not_on_primary(self) -> int:
        return sum(n for kid, n in self.tokens_by_key_id.items() if kid != self.primary_key_id)


def keys_generate() -> str:
    """A new random key in the form ``CONFIGSYNC_ENCRYPTION_KEYS`` accepts."""
    return generate_key()


def encrypted_models() -> list[tuple[type[models.Model], list[EncryptedTextField]]]:
    """Every installed model that has encrypted fields, with those fields."""
    found = []
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if fields:
            found.append((model, fields))
    return found


def _with_any_token(
    model: type[models.Model], fields: list[EncryptedTextField]
) -> models.QuerySet[models.Model]:
    condition = models.Q()
    for f in fields:
        condition |= models.Q(**{f"{f.attname}__isnull": False})
    return model._base_manager.filter(condition)


def _json_path(path: Sequence[str]) -> tuple[str, str]:
    """``path`` as PostgreSQL (``{a,b}``) and SQLite (``$.a.b``) write a JSON path."""
    for part in path:
        if not part.isidentifier() or not part.isascii():
            raise ValueError(f"not a field name: {part!r}")
    return "{" + ",".join(path) + "}", "$." + ".".join(path)


@dataclass(frozen=True)
class _Slot:
    """Where one wire field's token sits: a JSON column and the key path in it. The SQL below
    reads and writes that one string in the database, so no wire form is parsed in Python."""

    column: str
    path: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path[-1]

    def read(self, table: str) -> str:
        """SQL of the string at the path of ``table``'s column (``NULL`` when it is not one)."""
        column = f"{connection.ops.quote_name(table)}.{connection.ops.quote_name(self.column)}"
        pg, lite = _json_path(self.path)
        if connection.vendor == "postgresql":
            string, text = f"jsonb_typeof({column} #> '{pg}') = 'string'", f"{column} #>> '{pg}'"
        else:
            string = f"json_type({column}, '{lite}') = 'text'"
            text = f"json_extract({column}, '{lite}')"
        return f"CASE WHEN {string} THEN {text} END"

    def replace(self) -> tuple[str, str]:
        """``(assignment, condition)`` of an update from a set (``t``: the row, ``v``: the set):
        the string becomes ``v.new`` where it still is ``v.old``; nothing else changes."""
        column = connection.ops.quote_name(self.column)
        pg, lite = _json_path(self.path)
        if connection.vendor == "postgresql":
            return (
                f"{column} = jsonb_set(t.{column}, '{pg}', to_jsonb(v.new))",
                f"t.{column} #>> '{pg}' = v.old",
            )
        return (
            f"{column} = json_set(t.{column}, '{lite}', v.new)",
            f"json_extract(t.{column}, '{lite}') = v.old",
        )


@dataclass(frozen=True)
class _KeptVersions:
    """A table that keeps versions of records in wire form (JSON), with their tokens.

    The feed copies of sealed fields, the conflicts' two versions and the history's versions
    are all walked (and counted by ``keys status``) as one of these.
    """

    model: type[models.Model]
    columns: tuple[str, ...]
    """The JSON columns holding a version each."""
    nested: bool
    """A column holds a kept version (``{"hlc", …, "data": wire form}``), not the wire form."""
    names: dict[str, list[str]]
    """Per model label: the wire fields holding tokens (labels not here are not walked)."""
    detail: str
    """The field that tells one row of a record from another in a report."""
    where: str
    """How a report names a token's place: ``{key}``, ``{detail}`` and ``{column}`` filled in."""
    condition: models.Q = field(default_factory=models.Q)

    @functools.cached_property
    def slots(self) -> list[_Slot]:
        names = sorted({name for label_names in self.names.values() for name in label_names})
        prefix = ("data",) if self.nested else ()
        return [_Slot(column, (*prefix, name)) for column in self.columns for name in names]

    def rows(self) -> models.QuerySet[Any]:
        """``(pk, model label, natural key, detail, *one token or None per slot)`` of each row,
        by primary key."""
        table = self.model._meta.db_table
        tokens = {
            f"token_{i}": RawSQL(slot.read(table), [])  # noqa: S611 (names from _meta)
            for i, slot in enumerate(self.slots)
        }
        return (
            self.model._base_manager.filter(self.condition, model_label__in=list(self.names))
            .annotate(**tokens)
            .order_by("pk")
            .values_list("pk", "model_label", "natural_key", self.detail, *tokens)
        )

    def tokens(self, row: Sequence[Any]) -> Iterator[tuple[int, str]]:
        """``(slot index, token)`` of each token of one row of :meth:`rows`."""
        names = self.names.get(row[1], ())
        for i, slot in enumerate(self.slots):
            token = row[4 + i]
            if token and slot.name in names:
                yield i, token


def _kept_versions() -> list[_KeptVersions]:
    """Where tokens are kept besides the model rows (which registered fields hold them comes
    from the replication registry: a plain value that looks like a token is not one)."""
    encrypted = {
        rm.label: rm.encrypted_field_names()
        for rm in registry.all_registered()
        if rm.encrypted_field_names()
    }
    sealed = {rm.label: sorted(rm.sensitive) for rm in registry.all_registered() if rm.sensitive}
    return [
        _KeptVersions(
            model=ReplicatedRecord,
            columns=("data",),
            nested=False,
            names=sealed,
            detail="seq",
            where="{key}",
            condition=models.Q(deleted=False),
        ),
        _KeptVersions(
            model=Conflict,
            columns=("local_version", "remote_version"),
            nested=True,
            names=encrypted,
            detail="pk",
            where="{key}, conflict {detail} {column}",
        ),
        _KeptVersions(
            model=RecordVersion,
            columns=("data",),
            nested=False,
            names=encrypted,
            detail="number",
            where="{key}, history version {detail}",
            condition=models.Q(deleted=False),
        ),
    ]


def keys_status() -> KeyUsageReport:
    """Count stored tokens per key id (kept versions included), without decrypting."""
    keyring = get_keyring()
    counts: Counter[str] = Counter()

    def count(token: str) -> None:
        try:
            counts[token_key_id(token)] += 1
        except TokenError:
            counts["<not a token>"] += 1

    for model, fields in encrypted_models():
        names = [f.attname for f in fields]
        for row in _with_any_token(model, fields).values_list(*names).iterator():
            for token in row:
                if token is not None:
                    count(token)
    for kept in _kept_versions():
        for row in kept.rows().iterator():
            for _slot, token in kept.tokens(row):
                count(token)
    return KeyUsageReport(
        primary_key_id=keyring.primary.kid,
        configured_key_ids=[key.kid for key in keyring.keys],
        tokens_by_key_id=dict(counts),
    )


class _Renewal:
    """One run's re-encryption: the keyring, the report it counts into, and the tokens renewed
    so far (one old token gets one new token, so tokens shared between copies stay shared)."""

    def __init__(self, report: RotationReport) -> None:
        self.keyring = get_keyring()
        self.current = f"{TOKEN_PREFIX}:{self.keyring.primary.kid}:"
        self.report = report
        self.renewed: dict[tuple[str, str], str] = {}

    def renew(self, token: str, *, label: str, name: str, key: str) -> str | None:
        """``token`` re-encrypted with the primary key, or ``None`` (counted as current) when it
        is on it already; ``TokenError`` when no configured key can read it."""
        if token.startswith(self.current):
            self.report.already_current += 1
            return None
        context = encryption_context_for(model_label=label, field_name=name, natural_key=key)
        new = self.renewed.get((context, token))
        if new is None:
            new = self.keyring.encrypt(
                self.keyring.decrypt(token, context=context), context=context
            )
            self.renewed[(context, token)] = new
        self.report.rotated += 1
        return new

    def unreadable(self, error: TokenError, *, label: str, name: str, record: str) -> None:
        """Report a token no key can read (``record`` names where it is; never a value)."""
        self.report.unreadable.append(
            UnreadableValue(model=label, field=name, record=record, reason=str(error))
        )

    def batch_starts(self) -> None:
        if len(self.renewed) > _MEMO_MAX:
            self.renewed.clear()


_COLUMN_REFERENCE = re.compile(r"\bv\.([a-z_][a-z0-9_]*)\b")


def _update_from_set(
    table: str,
    *,
    assignments: str,
    condition: str,
    columns: dict[str, str],
    rows: Sequence[Sequence[object]],
) -> None:
    """``UPDATE <table> AS t SET <assignments> WHERE <condition>`` for every row of ``rows``.

    In ``assignments`` and ``condition``, ``v.<name>`` is the row's value of column ``<name>``;
    ``columns`` names the columns in row order with their PostgreSQL types. PostgreSQL runs one
    statement for the whole set, sent as one JSON array of rows (one parameter, encoded and
    parsed in C: psycopg's client-side binding quotes array parameters element by element in
    Python, 3x slower); SQLite runs the statement row by row with ``executemany`` (in process,
    no round trips).
    """
    if not rows:
        return
    table = connection.ops.quote_name(table)
    names = list(columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            values = ", ".join(
                f"e ->> {i} AS {name}" if kind == "text" else f"(e ->> {i})::{kind} AS {name}"
                for i, (name, kind) in enumerate(columns.items())
            )
            cursor.execute(
                f"UPDATE {table} AS t SET {assignments} "  # noqa: S608 (names from _meta)
                f"FROM (SELECT {values} FROM json_array_elements(%s::json) AS e) AS v "
                f"WHERE {condition}",
                [json.dumps(rows, cls=DjangoJSONEncoder)],
            )
            return
        order: list[int] = []

        def placeholder(match: re.Match[str]) -> str:
            order.append(names.index(match.group(1)))
            return "%s"

        sql = _COLUMN_REFERENCE.sub(
            placeholder,
            f"UPDATE {table} AS t SET {assignments} WHERE {condition}",  # noqa: S608 (as above)
        )
        params: list[list[Any]] = [[row[i] for i in order] for row in rows]
        cursor.executemany(sql, params)


def _primary_key(model: type[models.Model]) -> tuple[str, str]:
    """The primary key's quoted column and its database type (a set's ``pk`` column)."""
    pk = model._meta.pk
    column = getattr(pk, "column", None)
    kind = pk.rel_db_type(connection) if pk is not None else None
    if not column or not kind:
        raise TypeError(f"{model._meta.label} has no primary key column")
    return connection.ops.quote_name(column), kind


def _rotate_rows_batch(
    model: type[models.Model],
    fields: list[EncryptedTextField],
    *,
    after_pk: object,
    batch_size: int,
    renewal: _Renewal,
) -> object | None:
    """Rotate the next ``batch_size`` rows after ``after_pk`` and their feed copies; the last pk
    seen, or ``None`` when the model is done."""
    natural_key_field: str = model.natural_key_field  # type: ignore[attr-defined]
    label = model._meta.label_lower
    queryset = _with_any_token(model, fields).order_by("pk")
    if after_pk is not None:
        queryset = queryset.filter(pk__gt=after_pk)
    renewal.batch_starts()
    with transaction.atomic():
        rows = list(
            queryset.select_for_update().values_list(
                "pk", natural_key_field, *(f.attname for f in fields)
            )[:batch_size]
        )
        changed: list[list[object]] = []
        copies: list[list[list[object]]] = [[] for _ in fields]
        for pk, natural_key, *tokens in rows:
            key = str(natural_key)
            update: list[object] = [pk]
            for i, (f, token) in enumerate(zip(fields, tokens, strict=True)):
                new = None
                if token is not None:
                    token = str(token)
                    try:
                        new = renewal.renew(token, label=label, name=f.name, key=key)
                    except TokenError as exc:
                        renewal.unreadable(exc, label=label, name=f.name, record=key)
                if new is None:
                    update += [None, None]
                else:
                    update += [token, new]
                    copies[i].append([label, key, token, new])
            if any(update[1:]):
                changed.append(update)
        _write_rows(model, fields, changed)
        if registry.for_model(model) is not None:
            for f, field_copies in zip(fields, copies, strict=True):
                # The feed's copy: the same new token where it holds the row's old one.
                assignment, holds_old = _Slot("data", (f.name,)).replace()
                _update_from_set(
                    ReplicatedRecord._meta.db_table,
                    assignments=assignment,
                    condition=(
                        "t.model_label = v.label AND t.natural_key = v.natural_key AND " + holds_old
                    ),
                    columns={"label": "text", "natural_key": "text", "old": "text", "new": "text"},
                    rows=field_copies,
                )
    renewal.report.scanned += len(rows)
    if rows:
        renewal.report.batches += 1
    if len(rows) < batch_size:
        return None
    return rows[-1][0]


def _write_rows(
    model: type[models.Model], fields: list[EncryptedTextField], rows: list[list[object]]
) -> None:
    """Write ``(pk, old, new, old, new, …)`` per row: each field gets its new token where it
    still holds the old one (a field not rotated has ``None`` for both)."""
    quote = connection.ops.quote_name
    pk_column, pk_type = _primary_key(model)
    columns = {"pk": pk_type}
    assignments = []
    for i, f in enumerate(fields):
        columns[f"old{i}"] = columns[f"new{i}"] = "text"
        column = quote(f.column or f.attname)
        assignments.append(
            f"{column} = CASE WHEN t.{column} = v.old{i} THEN v.new{i} ELSE t.{column} END"
        )
    _update_from_set(
        model._meta.db_table,
        assignments=", ".join(assignments),
        condition=f"t.{pk_column} = v.pk",
        columns=columns,
        rows=rows,
    )


def _rotate_kept_batch(
    kept: _KeptVersions, *, after_pk: object, batch_size: int, renewal: _Renewal
) -> object | None:
    """Rotate the tokens in the next ``batch_size`` rows of ``kept``; the last pk, or ``None``."""
    queryset = kept.rows()
    if after_pk is not None:
        queryset = queryset.filter(pk__gt=after_pk)
    renewal.batch_starts()
    with transaction.atomic():
        rows = list(queryset.select_for_update()[:batch_size])
        changed: list[list[list[object]]] = [[] for _ in kept.slots]
        for row in rows:
            pk, label, key = row[:3]
            for i, token in kept.tokens(row):
                slot = kept.slots[i]
                try:
                    new = renewal.renew(token, label=label, name=slot.name, key=key)
                except TokenError as exc:
                    where = kept.where.format(key=key, detail=row[3], column=slot.column)
                    renewal.unreadable(exc, label=label, name=slot.name, record=where)
                    continue
                if new is not None:
                    changed[i].append([pk, token, new])
        pk_column, pk_type = _primary_key(kept.model)
        for slot, slot_rows in zip(kept.slots, changed, strict=True):
            assignment, holds_old = slot.replace()
            _update_from_set(
                kept.model._meta.db_table,
                assignments=assignment,
                condition=f"t.{pk_column} = v.pk AND {holds_old}",
                columns={"pk": pk_type, "old": "text", "new": "text"},
                rows=slot_rows,
            )
    renewal.report.scanned += len(rows)
    if rows:
        renewal.report.batches += 1
    if len(rows) < batch_size:
        return None
    return rows[-1][0]


def _audit(report: RotationReport) -> None:
    """One audit event per run, with its counts (never a value)."""
    audit_action(
        action=AuditEvent.Action.ROTATE_KEYS,
        details={
            "primary_key_id": report.primary_key_id,
            "scanned": report.scanned,
            "rotated": report.rotated,
            "already_current": report.already_current,
            "unreadable": len(report.unreadable),
            "batches": report.batches,
            "complete": report.complete,
        },
    )


def keys_rotate(*, batch_size: int | None = None, max_batches: int | None = None) -> RotationReport:
    """Re-encrypt every encrypted value not on the primary key; see the module docstring.

    ``batch_size`` rows (or conflicts, or history versions) per transaction (default
    ``CONFIGSYNC_ROTATION_BATCH_SIZE``); ``max_batches`` stops early (``report.complete`` is then
    false; run again to resume). Raises ``KeyringError`` when no usable key is configured; never
    raises for one bad value.
    """
    size = batch_size or app_settings.ROTATION_BATCH_SIZE
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport(primary_key_id=get_keyring().primary.kid)
    renewal = _Renewal(report)
    walks: list[functools.partial[object | None]] = [
        functools.partial(_rotate_rows_batch, model, fields, batch_size=size, renewal=renewal)
        for model, fields in encrypted_models()
    ]
    walks += [
        functools.partial(_rotate_kept_batch, kept, batch_size=size, renewal=renewal)
        for kept in _kept_versions()
    ]
    for walk in walks:
        after_pk: object | None = None
        while True:
            if max_batches is not None and report.batches >= max_batches:
                _audit(report)
                return report
            after_pk = walk(after_pk=after_pk)
            if after_pk is None:
                break
    report.complete = True
    _audit(report)
    logger.info(
        "key rotation to %s: %d value(s) rotated, %d already current, %d unreadable",
        report.primary_key_id,
        report.rotated,
        report.already_current,
        len(report.unreadable),
    )
    return report
