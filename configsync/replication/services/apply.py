"""Applying changes received from a peer (or retried from the quarantine).

Every change of a replicated record goes through the locked ``NodeClock`` row
(``configsync.replication.services.clock``) inside the applying transaction, which is what keeps
the change feed gap-free. Concurrency of two versions of one record is decided with version
vectors; concurrent versions are ordered by last-write-wins over their HLC timestamps
(``configsync.replication.hlc.lww_wins``) and the loser is kept as a ``Conflict``
(``configsync.replication.services.conflicts``). Items are validated first
(``configsync.replication.services.wire.changes_check``); an item this node cannot store is kept
as a ``QuarantinedChange`` while the rest applies. Values stay in wire form: this module never
decrypts.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    connection,
    models,
    transaction,
)
from django.db.models import signals as model_signals
from django.utils import timezone

from configsync.actor import PEER
from configsync.bulk import (
    JSONText,
    rows_by_keys,
    rows_by_keys_many,
    rows_delete,
    rows_insert,
    rows_update,
)
from configsync.conf import app_settings
from configsync.models import PeerCheckpoint, ReplicatedRecord
from configsync.replication import registry
from configsync.replication.context import applying_remote
from configsync.replication.hlc import HLC, lww_wins, physical_now_ms, receive, vv_leq, vv_merge
from configsync.replication.hooks import before_apply
from configsync.replication.services.clock import clock_locked
from configsync.replication.services.conflicts import (
    conflict_close,
    conflict_keep,
    conflict_keep_loser,
    conflict_skew_affected,
)
from configsync.replication.services.history import Changed, VersionRow, history_record
from configsync.replication.services.local import data_unreadable
from configsync.replication.services.quarantine_store import quarantine_keep
from configsync.replication.services.wire import (
    APPLIED,
    CONFLICT,
    QUARANTINED,
    STALE,
    Held,
    ItemResult,
    ParsedChange,
    PreChecked,
    Version,
    changes_check,
    escaped,
)
from configsync.signals import AppliedChange, changes_applied

logger = logging.getLogger(__name__)

_APPLY_ATTEMPTS = 6


def changes_apply(
    *,
    changes: Any,
    source_node: str,
    source_name: str,
    checkpoint: tuple[int, str] | None = None,
    source_skew_ms: int | None = None,
    checked: PreChecked | None = None,
) -> list[ItemResult]:
    """Apply a batch of changes received from ``source_node``; return one result per item.

    Each result is ``applied``, ``stale``, ``conflict`` or ``quarantined`` (with its
    ``reason``). No single item fails the batch: an item this node cannot store — it fails
    ``changes_check``, or the database refuses it — is kept as a ``QuarantinedChange``
    (``configsync.replication.services.quarantine``) while the rest applies, in one transaction
    together with
    the quarantine rows and, when given, the pull checkpoint ``(checkpoint id, new cursor)``, so
    the cursor moves on. Only a malformed batch (not a list, too large) raises
    ``ChangeValidationError``, applying nothing.

    When the whole batch meets a database error no validation foresaw (``DataError`` etc.), it is
    applied again item by item, each in a savepoint, and the failing items are quarantined.
    Idempotent and safe under concurrency: items are decided under row locks, so the same batch
    applied twice, ten times or concurrently leaves the state of one application (the repeats
    answer ``stale``). A transaction that loses a race on PostgreSQL (deadlock, concurrent insert
    of the same key) or SQLite (busy) is retried.

    ``source_skew_ms``: the source's measured clock skew; a conflict decided while it exceeds
    ``SKEW_WARNING_SECONDS``, between versions whose wall times are closer than it, is marked
    ``skew_affected``.

    ``checked``: ``wire.changes_precheck(changes)``, computed ahead (the puller checks the next
    page while this one applies); used only while it still holds for these changes
    (``PreChecked.holds``: the same settings and validation hooks), else they are checked
    again here, so the result never depends on it.
    """
    items = checked.items if checked is not None and checked.holds(changes) else None
    if items is None:
        items = changes_check(changes)
    context = _ApplyContext(source_node, source_name, source_skew_ms)
    per_item = False
    for attempt in range(_APPLY_ATTEMPTS):
        try:
            with transaction.atomic():
                results = _apply_checked(items, changes, context, per_item=per_item)
                if checkpoint is not None:
                    checkpoint_id, cursor = checkpoint
                    PeerCheckpoint.objects.filter(pk=checkpoint_id).update(cursor=cursor)
            return results
        except OperationalError as exc:
            if attempt == _APPLY_ATTEMPTS - 1 or connection.in_atomic_block:
                raise
            _log_retry(source_name, exc, attempt)
        except IntegrityError as exc:
            # A lost race (retried whole) or an item the database refuses: after two races,
            # or when a surrounding transaction forbids a clean retry, go item by item.
            if per_item:
                raise
            per_item = attempt >= 1 or connection.in_atomic_block
            _log_retry(source_name, exc, attempt)
        except _ITEM_FAILURES as exc:
            if per_item:
                raise
            logger.warning(
                "replication: a batch from %s failed (%s); applying it item by item",
                source_name,
                type(exc).__name__,
            )
            per_item = True
    raise AssertionError("unreachable")


_ITEM_FAILURES = (DatabaseError, ValidationError, ValueError, TypeError)
"""What storing one already-validated item may still raise (``OperationalError`` excepted)."""


def _log_retry(source_name: str, exc: Exception, attempt: int) -> None:
    logger.info("replication: retrying a batch from %s after %s", source_name, type(exc).__name__)
    if not connection.in_atomic_block:
        time.sleep(0.05 * (2**attempt))


@dataclass(frozen=True)
class _ApplyContext:
    source_node: str
    source_name: str
    source_skew_ms: int | None


def _held_result(index: int, item: Any, reason: str, context: _ApplyContext) -> ItemResult:
    quarantine_keep(
        item=item, reason=reason, source=context.source_name, source_node=context.source_node
    )
    fields = item if isinstance(item, dict) else {}
    logger.warning(
        "replication: quarantined %s:%s from %s: %s",
        escaped(fields.get("model"), 100),
        escaped(fields.get("key"), 255),
        context.source_name,
        reason[:300],
    )
    return ItemResult(
        index=index,
        model=escaped(fields.get("model"), 100),
        key=escaped(fields.get("key"), 255),
        status=QUARANTINED,
        reason=reason,
    )


def _apply_checked(
    checked: list[ParsedChange | Held],
    items: list[Any],
    context: _ApplyContext,
    *,
    per_item: bool,
) -> list[ItemResult]:
    results: dict[int, ItemResult] = {}
    parsed: list[tuple[int, ParsedChange]] = []
    for index, entry in enumerate(checked):
        if isinstance(entry, Held):
            results[index] = _held_result(index, entry.item, entry.reason, context)
        else:
            parsed.append((index, entry))
    if not per_item:
        applied = _apply_parsed([c for _, c in parsed], context)
        for (index, _), result in zip(parsed, applied, strict=True):
            result.index = index
            results[index] = result
    else:
        for index, change in parsed:
            try:
                with transaction.atomic():
                    (result,) = _apply_parsed([change], context)
            except OperationalError:
                raise
            except _ITEM_FAILURES as exc:
                result = _held_result(
                    index,
                    items[index],
                    f"this node could not store it ({type(exc).__name__})",
                    context,
                )
            result.index = index
            results[index] = result
    return [results[i] for i in range(len(checked))]


@dataclass(slots=True)
class _Record:
    """A replication row as this module reads and writes it (``ReplicatedRecord``'s columns;
    ``pk`` ``None`` for a row to insert): plain attributes, no model instance per record."""

    pk: int | None
    model_label: str
    natural_key: str
    hlc: str = ""
    origin_node: str = ""
    version_vector: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    data: dict[str, Any] | None = None
    seq: int = 0
    received_from: str = ""
    unreadable: bool = False
    updated_at: Any = None
    encoded: JSONText | None = None
    """``data`` as JSON, when it was encoded for the history too (written as it is)."""


_RECORD_COLUMNS = (
    "pk",
    "model_label",
    "natural_key",
    "hlc",
    "origin_node",
    "version_vector",
    "deleted",
    "data",
    "seq",
    "received_from",
    "unreadable",
)


@dataclass
class _Pending:
    record: _Record
    label: str
    key: str
    deleted: bool
    notify: bool
    history: Changed | None = None


@dataclass(frozen=True)
class _RowWrite:
    """A received version to write to a model row set-wise (see ``_set_written``)."""

    rm: registry.ReplicatedModel
    key: str
    pk: Any
    """The primary key of the existing row (``None``: no row yet)."""
    version: Version


def _apply_parsed(parsed: list[ParsedChange], context: _ApplyContext) -> list[ItemResult]:
    source_node, source_name = context.source_node, context.source_name
    results: list[ItemResult] = []
    pending: list[_Pending] = []
    newest: HLC | None = None
    by_index: dict[int, ItemResult] = {}
    set_written = {rm.label for rm in {change.model for change in parsed} if _set_written(rm)}
    instances, records = _lock_batch(parsed, set_written)
    rows: list[_RowWrite] = []

    def write(rm: registry.ReplicatedModel, key: str, version: Version) -> None:
        found = instances.get((rm.label, key))
        if rm.label in set_written:
            rows.append(_RowWrite(rm, key, found, version))
        else:
            _write_model(rm, key, found, version)

    # Batch order is the sender's feed order: a change that depends on an earlier one (e.g. a
    # provider made default after the previous default was cleared) applies after it. Models
    # written set-wise have no such dependency (``registry.ReplicatedModel.set_writable``).
    for index in range(len(parsed)):
        change = parsed[index]
        rm = change.model
        remote = change.version
        newest = remote.hlc if newest is None or remote.hlc > newest else newest
        record = records.get((rm.label, change.key))
        local = _version_of(record)
        local_vv: dict[str, str] = dict(record.version_vector) if record is not None else {}

        if record is not None and vv_leq(change.vv, local_vv):
            status = STALE
        elif record is None or vv_leq(local_vv, change.vv):
            status = APPLIED
            if local is None or local.hlc != remote.hlc or local.deleted != remote.deleted:
                write(rm, change.key, remote)
            record = _set_version(record, rm.label, change.key, remote, change.vv)
            record.received_from = source_node
            pending.append(
                _Pending(
                    record,
                    rm.label,
                    change.key,
                    remote.deleted,
                    True,
                    _history_entry(local, record),
                )
            )
        elif local is not None and record is not None and local.hlc == remote.hlc:
            # The same version reached us and the sender along different paths (each merged
            # with other losers): nothing to decide, only the vectors join.
            status = APPLIED
            record.version_vector = vv_merge(local_vv, change.vv)
            record.received_from = ""
            pending.append(_Pending(record, rm.label, change.key, record.deleted, False))
        else:
            assert local is not None and record is not None
            status = CONFLICT
            remote_wins = lww_wins(remote.hlc, remote.deleted, local.hlc, local.deleted)
            if app_settings.TEST_MERGE_RULE == "broken":
                # Test only (CONFIGSYNC_TEST_MERGE_RULE, refused outside settings.local/test by
                # check E070): this node keeps its own version in every conflict, so the
                # convergence tests can show they catch a wrong merge rule.
                remote_wins = False
            merged = vv_merge(local_vv, change.vv)
            if remote_wins:
                write(rm, change.key, remote)
                record = _set_version(record, rm.label, change.key, remote, merged)
            else:
                record.version_vector = merged
            # The merged version differs from what the source sent: it goes back to it too,
            # carrying the loser, so the source keeps the same conflict.
            record.received_from = ""
            pending.append(
                _Pending(
                    record,
                    rm.label,
                    change.key,
                    record.deleted,
                    remote_wins,
                    _history_entry(local, record) if remote_wins else None,
                )
            )
            conflict_keep(
                label=rm.label,
                key=change.key,
                source=source_name,
                local=local,
                remote=remote,
                winner="remote" if remote_wins else "local",
                skew_affected=conflict_skew_affected(
                    local=local, remote=remote, source_skew_ms=context.source_skew_ms
                ),
            )
        for loser in change.losers:
            conflict_keep_loser(
                label=rm.label,
                key=change.key,
                source=source_name,
                before=local,
                winner=remote,
                loser=loser,
            )
        for versions, chosen in change.resolved:
            conflict_close(
                label=rm.label, key=change.key, versions=versions, chosen=chosen, by=str(remote.hlc)
            )
        unreadable = data_unreadable(remote.data, rm) if status != STALE else False
        if record is not None and status != STALE:
            same = record.data is remote.data
            record.unreadable = unreadable if same else data_unreadable(record.data, rm)
        by_index[index] = ItemResult(
            index=index, model=rm.label, key=change.key, status=status, unreadable=unreadable
        )
    results = [by_index[i] for i in range(len(parsed))]
    now = timezone.now()
    _write_rows(rows, now)

    if pending:
        clock = clock_locked()
        if newest is not None:
            clock.last_wall_ms, clock.last_logical = receive(
                clock.last_wall_ms, clock.last_logical, newest, now_ms=physical_now_ms()
            )
        created: list[_Record] = []
        updated: list[_Record] = []
        notices: list[AppliedChange] = []
        for item in pending:
            clock.last_seq += 1
            item.record.seq = clock.last_seq
            item.record.updated_at = now
            (updated if item.record.pk else created).append(item.record)
            if item.notify:
                notices.append(AppliedChange(item.label, item.key, item.record.seq, item.deleted))
        _records_write(created, updated)
        clock.save()
        history_record(
            changes=[item.history for item in pending if item.history is not None],
            actor=f"peer:{source_name}",
            via=PEER,
        )
        if notices:
            transaction.on_commit(
                lambda: changes_applied.send(sender=ReplicatedRecord, changes=notices)
            )
    return results


_RECORD_FIELDS = [
    "hlc",
    "origin_node",
    "version_vector",
    "deleted",
    "data",
    "seq",
    "received_from",
    "unreadable",
    "updated_at",
]


def _records_write(created: list[_Record], updated: list[_Record]) -> None:
    """Insert the new replication rows and update the changed ones, one statement each."""
    meta = ReplicatedRecord._meta
    fields = [meta.get_field(name) for name in ["model_label", "natural_key", *_RECORD_FIELDS]]
    rows_insert(
        model=ReplicatedRecord,
        fields=fields,  # type: ignore[arg-type]
        rows=[[r.model_label, r.natural_key, *_record_values(r)] for r in created],
    )
    rows_update(
        model=ReplicatedRecord,
        fields=fields[2:],  # type: ignore[arg-type]
        rows=[[r.pk, *_record_values(r)] for r in updated],
    )


def _record_values(r: _Record) -> list[Any]:
    """``r``'s values of ``_RECORD_FIELDS``, JSON already encoded where it was or can be
    cheaply (``bulk.JSONText``)."""
    return [
        r.hlc,
        r.origin_node,
        _vv_text(r.version_vector),
        r.deleted,
        r.data if r.encoded is None else r.encoded,
        r.seq,
        r.received_from,
        r.unreadable,
        r.updated_at,
    ]


_PLAIN = re.compile(r"[A-Za-z0-9_.:\-]*\Z")
"""Text JSON writes as it is between its quotes (no escape): what node ids and canonical
timestamps are made of."""


def _vv_text(vv: dict[str, str]) -> JSONText:
    """A version vector as ``json.dumps`` encodes it, without running it when every node and
    timestamp is plain text (``_PLAIN``): a page writes one per record."""
    parts = []
    for node, stamp in vv.items():
        if type(node) is not str or type(stamp) is not str:
            return JSONText(json.dumps(vv))
        if not (_PLAIN.match(node) and _PLAIN.match(stamp)):
            return JSONText(json.dumps(vv))
        parts.append(f'"{node}": "{stamp}"')
    return JSONText("{" + ", ".join(parts) + "}")


def _history_entry(local: Version | None, record: _Record) -> Changed | None:
    """The history entry of a received version that replaced ``local`` (``None``: the same
    version, only its vector grew). A snapshot: the row is changed again before it is written
    (its sequence number)."""
    if local is not None and local.hlc == HLC.parse(record.hlc) and local.deleted == record.deleted:
        return None
    before = None if local is None or local.deleted else local.data
    if record.data is not None:
        record.encoded = JSONText(json.dumps(record.data))
    return Changed(
        record=VersionRow(
            record.model_label,
            record.natural_key,
            record.hlc,
            record.origin_node,
            record.deleted,
            record.data,
            record.encoded,
        ),
        before=before,
    )


def _lock_batch(
    parsed: list[ParsedChange], set_written: set[str]
) -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], _Record]]:
    """Lock the model rows, then the replication rows, of every record of the batch.

    Same order as a local write (model row, replication row, then the clock), so a batch and a
    concurrent local write of one record never deadlock; two queries per model, not per item.
    Per record: its model instance, or only its primary key for models in ``set_written``.
    """
    keys: dict[str, list[str]] = {}
    models_by_label: dict[str, registry.ReplicatedModel] = {}
    for change in parsed:
        keys.setdefault(change.model.label, []).append(change.key)
        models_by_label[change.model.label] = change.model
    instances: dict[tuple[str, str], Any] = {}
    records: dict[tuple[str, str], _Record] = {}
    if all(label in set_written and _text_key(models_by_label[label]) for label in keys):
        # Every lookup a set: one request for all of them, in the same order (PostgreSQL).
        lookups: list[dict[str, Any]] = []
        for label, names in keys.items():
            field_name = models_by_label[label].natural_key_field
            lookups.append(
                {
                    "model": models_by_label[label].model,
                    "key_field": field_name,
                    "keys": names,
                    "fields": [field_name, "pk"],
                    "lock": True,
                }
            )
            lookups.append(_records_lookup(label, names))
        found = iter(rows_by_keys_many(lookups=lookups))
        for label in keys:
            for key, pk in next(found):
                instances[(label, str(key))] = pk
            for values in next(found):
                record = _Record(*values)
                records[(label, record.natural_key)] = record
        return instances, records
    for label, names in keys.items():
        rm = models_by_label[label]
        field_name = rm.natural_key_field
        key_field = rm.model._meta.get_field(field_name)
        if label in set_written and isinstance(key_field, models.CharField | models.TextField):
            for key, pk in rows_by_keys(
                model=rm.model,
                key_field=field_name,
                keys=names,
                fields=[field_name, "pk"],
                lock=True,
            ):
                instances[(label, str(key))] = pk
        else:
            for instance in rm.model._default_manager.select_for_update().filter(
                **{f"{field_name}__in": names}
            ):
                key = rm.natural_key(instance)
                instances[(label, key)] = instance.pk if label in set_written else instance
        for values in rows_by_keys(**_records_lookup(label, names)):
            record = _Record(*values)
            records[(label, record.natural_key)] = record
    return instances, records


def _text_key(rm: registry.ReplicatedModel) -> bool:
    key_field = rm.model._meta.get_field(rm.natural_key_field)
    return isinstance(key_field, models.CharField | models.TextField)


def _records_lookup(label: str, names: list[str]) -> dict[str, Any]:
    """The ``rows_by_keys`` arguments that lock the replication rows of ``names``."""
    return {
        "model": ReplicatedRecord,
        "key_field": "natural_key",
        "keys": names,
        "fields": _RECORD_COLUMNS,
        "where": {"model_label": label},
        "lock": True,
    }


def _version_of(record: _Record | None) -> Version | None:
    if record is None:
        return None
    return Version(HLC.parse(record.hlc), record.origin_node, record.deleted, record.data)


def _set_version(
    record: _Record | None,
    label: str,
    key: str,
    version: Version,
    vv: dict[str, str],
) -> _Record:
    if record is None:
        record = _Record(None, label, key)
    record.hlc = str(version.hlc)
    record.origin_node = version.origin
    record.deleted = version.deleted
    record.data = version.data
    record.version_vector = vv
    return record


def _write_model(
    rm: registry.ReplicatedModel, key: str, instance: models.Model | None, version: Version
) -> None:
    """Apply a version through the model so its ordinary signals (caches, .env bridge) fire."""
    if version.deleted:
        if instance is not None:
            with applying_remote():
                instance.delete()
        return
    target = instance if instance is not None else rm.model()
    rm.deserialize_into(target, dict(version.data or {}))
    setattr(target, rm.natural_key_field, key)
    hook = before_apply(rm.label)
    if hook is not None:
        hook(target)
    with applying_remote():
        target.save()
        rm.save_related(target)


def _set_written(rm: registry.ReplicatedModel) -> bool:
    """Whether this page writes ``rm``'s rows set-wise (``_write_rows``) rather than through
    ``save()``/``delete()`` per record: the model allows it (``ReplicatedModel.set_writable``),
    no before-apply hook must see each version, and no receiver outside configsync listens to
    its model signals (configsync's own — the lookup cache's — take ``changes_applied``, the
    replication receivers do nothing while applying). Decided per page: hooks and receivers
    may be connected at any time."""
    if not rm.set_writable or before_apply(rm.label) is not None:
        return False
    model = rm.model
    for signal in _MODEL_SIGNALS:
        sync, asynchronous = signal._live_receivers(model)
        for receiver in (*sync, *asynchronous):
            if not getattr(receiver, "__module__", "").startswith("configsync."):
                return False
    return True


_MODEL_SIGNALS = (
    model_signals.pre_save,
    model_signals.post_save,
    model_signals.pre_delete,
    model_signals.post_delete,
)


@dataclass(frozen=True)
class _Columns:
    """How a received version becomes a row of its model, as ``save()`` would write it."""

    fields: tuple[models.Field, ...]
    """Every column but the primary key, in the model's order."""
    stamped: frozenset[str]
    """Date-times ``save()`` sets to the write's time on insert (``auto_now``/``auto_now_add``)."""
    touched: frozenset[str]
    """Date-times ``save()`` sets to the write's time on update (``auto_now``)."""
    inserted: tuple[tuple[int, str, Any, Any], ...]
    """Per column of ``fields``, how an inserted row gets its value: ``(source, wire name,
    conversion, default)``, source one of ``_NOW``, ``_KEY``, ``_WIRE`` (the version's value
    when it carries the field, else the default), ``_DEFAULT``; the default a constant, or
    the field when ``get_default`` must run per row (a callable default)."""


_NOW, _KEY, _WIRE, _DEFAULT = range(4)
_COLUMNS: dict[registry.ReplicatedModel, _Columns] = {}


def _columns(rm: registry.ReplicatedModel) -> _Columns:
    columns = _COLUMNS.get(rm)
    if columns is None:
        fields = tuple(f for f in rm.model._meta.concrete_fields if not f.primary_key)
        stamped = frozenset(
            f.name
            for f in fields
            if isinstance(f, models.DateTimeField) and (f.auto_now or f.auto_now_add)
        )
        touched = frozenset(
            f.name for f in fields if isinstance(f, models.DateTimeField) and f.auto_now
        )
        inserted = []
        for f in fields:
            default: Any = f if f.has_default() and callable(f.default) else f.get_default()
            if f.name in stamped:
                inserted.append((_NOW, f.name, None, None))
            elif f.name == rm.natural_key_field:
                inserted.append((_KEY, f.name, None, None))
            elif f.name in rm.field_map:
                inserted.append((_WIRE, f.name, _conversion(f), default))
            else:
                inserted.append((_DEFAULT, f.name, None, default))
        columns = _COLUMNS[rm] = _Columns(fields, stamped, touched, tuple(inserted))
    return columns


def _conversion(f: models.Field) -> Any:
    """What turns a wire value of ``f`` into the attribute ``save()`` would write (``None``:
    the value itself)."""
    if isinstance(f, models.DateTimeField):
        return lambda value: f.get_prep_value(f.to_python(value))
    return None


def _column_value(f: models.Field, value: Any) -> Any:
    """A wire value (checked by ``changes_check``) as the attribute ``save()`` would write."""
    if isinstance(f, models.DateTimeField):
        return f.get_prep_value(f.to_python(value))
    return value


def _inserted_row(columns: _Columns, key: str, data: dict[str, Any], now: Any) -> list[Any]:
    """The row ``save()`` would insert for a new record of ``key`` holding ``data``."""
    row: list[Any] = []
    for source, name, convert, default in columns.inserted:
        if source == _WIRE and name in data:
            value = data[name]
            row.append(value if convert is None else convert(value))
        elif source == _NOW:
            row.append(now)
        elif source == _KEY:
            row.append(key)
        else:
            row.append(default.get_default() if isinstance(default, models.Field) else default)
    return row


def _write_rows(rows: list[_RowWrite], now: Any) -> None:
    """Write received versions to their models' rows: per model one insert of the new rows,
    one update of the existing ones (per set of fields the versions carry) and one delete."""
    by_model: dict[registry.ReplicatedModel, list[_RowWrite]] = {}
    for write in rows:
        by_model.setdefault(write.rm, []).append(write)
    for rm, writes in by_model.items():
        model = rm.model
        columns = _columns(rm)
        wire = rm.field_map
        inserts: list[list[Any]] = []
        updates: dict[tuple[str, ...], list[list[Any]]] = {}
        deletes: list[Any] = []
        for w in writes:
            if w.version.deleted:
                if w.pk is not None:
                    deletes.append(w.pk)
                continue
            data = w.version.data or {}
            if w.pk is None:
                inserts.append(_inserted_row(columns, w.key, data, now))
            else:
                names = tuple(
                    f.name
                    for f in columns.fields
                    if f.name in columns.touched or (f.name in data and f.name in wire)
                )
                updates.setdefault(names, []).append(
                    [
                        w.pk,
                        *(
                            now
                            if name in columns.touched
                            else _column_value(wire[name], data[name])
                            for name in names
                        ),
                    ]
                )
        rows_delete(model=model, pks=deletes)
        for names, changed in updates.items():
            meta = model._meta
            rows_update(
                model=model,
                fields=[meta.get_field(name) for name in names],  # type: ignore[misc]
                rows=changed,
            )
        rows_insert(model=model, fields=columns.fields, rows=inserts)
