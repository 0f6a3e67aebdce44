"""The replication engine's writes: stamping local changes and applying remote ones.

Every change of a replicated record, local or received, goes through this module inside the
writer's transaction and takes the single ``NodeClock`` row ``select_for_update`` to get its feed
sequence number (and, for a local write, a new HLC timestamp). The row lock is held until commit,
so sequence numbers become visible in commit order and the change feed never skips a change (see
docs/architecture.md, "Replication").

Concurrency of two versions of one record is decided with version vectors; concurrent versions
are ordered by last-write-wins over their HLC timestamps (``configsync.replication.hlc.lww_wins``)
and the loser is kept as a ``Conflict``. Values stay in wire form (ciphertext for secrets): this
module never decrypts.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    connection,
    models,
    transaction,
)
from django.utils import timezone

from configsync.conf import app_settings
from configsync.crypto.fields import is_encrypted_field
from configsync.crypto.keyring import get_keyring, is_token, token_key_id
from configsync.models import Conflict, NodeClock, PeerCheckpoint, ReplicatedRecord
from configsync.replication import registry
from configsync.replication.context import applying_remote
from configsync.replication.errors import ChangeValidationError
from configsync.replication.hlc import (
    HLC,
    HLCParseError,
    lww_wins,
    physical_now_ms,
    receive,
    tick,
    vv_leq,
    vv_merge,
)
from configsync.replication.hooks import before_apply
from configsync.replication.services.conflicts import conflict_create
from configsync.services.node import node_id
from configsync.signals import change_committed

logger = logging.getLogger(__name__)

APPLIED = "applied"
STALE = "stale"
CONFLICT = "conflict"
QUARANTINED = "quarantined"
"""An item this node could not store: kept as a ``QuarantinedChange``; the rest applies."""
_APPLY_ATTEMPTS = 6
_CLOCK_PK = 1


# --- the clock --------------------------------------------------------------------------------


def clock_locked() -> NodeClock:
    """The ``NodeClock`` row, locked until the current transaction ends (created on demand)."""
    if not connection.in_atomic_block:
        raise RuntimeError("clock_locked() must run inside a transaction")
    clock = NodeClock.objects.select_for_update().filter(pk=_CLOCK_PK).first()
    if clock is None:
        try:
            with transaction.atomic():
                NodeClock.objects.create(pk=_CLOCK_PK, epoch=uuid.uuid4().hex[:16])
        except IntegrityError:
            pass
        clock = NodeClock.objects.select_for_update().get(pk=_CLOCK_PK)
    if not clock.epoch:
        clock.epoch = uuid.uuid4().hex[:16]
    return clock


def clock_issue() -> tuple[HLC, int]:
    """Issue a local write's new timestamp and its feed sequence number, in one clock update.

    Call inside a transaction: the clock row stays locked until it ends, which is what makes
    sequence numbers become visible in commit order (see the module docstring).
    """
    clock = clock_locked()
    wall, logical = tick(clock.last_wall_ms, clock.last_logical, now_ms=physical_now_ms())
    clock.last_wall_ms, clock.last_logical = wall, logical
    clock.last_seq += 1
    clock.save()
    return HLC(wall, logical, node_id()), clock.last_seq


# --- local writes -----------------------------------------------------------------------------


def json_safe(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with dates, decimals and UUIDs as the JSON text Django's encoder gives them."""
    result: dict[str, Any] = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return result


def replication_lock_record(*, instance: models.Model) -> None:
    """Lock the replication row of ``instance`` until commit (no-op outside a transaction)."""
    rm = registry.for_model(type(instance))
    if rm is None or not connection.in_atomic_block:
        return
    list(
        ReplicatedRecord.objects.select_for_update()
        .filter(model_label=rm.label, natural_key=rm.natural_key(instance))
        .values_list("pk", flat=True)
    )


def replication_record_local_change(
    *, instance: models.Model, deleted: bool, force: bool = False
) -> ReplicatedRecord | None:
    """Record a local write (or delete) of ``instance`` as a new version in the change feed.

    Runs in the caller's transaction (or its own): stamps a new HLC, sets
    ``version_vector[this node]`` to it, stores the wire form (``None`` for a tombstone), issues
    the next feed sequence number and, after commit, sends ``change_committed(local=True)``.
    A save that leaves the wire form unchanged is not a new version unless ``force``. Returns
    the replication row, or ``None`` when the model does not replicate or nothing changed.
    """
    rm = registry.for_model(type(instance))
    if rm is None:
        return None
    key = rm.natural_key(instance)
    data = None if deleted else json_safe(rm.serialize(instance))
    with transaction.atomic():
        record = (
            ReplicatedRecord.objects.select_for_update()
            .filter(model_label=rm.label, natural_key=key)
            .first()
        )
        if not force and record is not None and record.deleted == deleted and record.data == data:
            return None
        issued, seq = clock_issue()
        stamp = str(issued)
        if record is None:
            record = ReplicatedRecord(model_label=rm.label, natural_key=key)
        record.version_vector = {**(record.version_vector or {}), issued.node: stamp}
        record.hlc = stamp
        record.origin_node = issued.node
        record.deleted = deleted
        record.data = data
        record.seq = seq
        record.received_from = ""
        record.unreadable = _unreadable(data, rm)
        record.save()
        _notify_after_commit(rm.label, key, record.seq, deleted, local=True)
    return record


def _notify_after_commit(label: str, key: str, seq: int, deleted: bool, *, local: bool) -> None:
    def send() -> None:
        change_committed.send(
            sender=ReplicatedRecord,
            model_label=label,
            natural_key=key,
            seq=seq,
            deleted=deleted,
            local=local,
        )

    transaction.on_commit(send)


def replication_write_version(
    *,
    model_label: str,
    natural_key: str,
    deleted: bool,
    data: dict[str, Any] | None,
    force: bool = False,
) -> ReplicatedRecord | None:
    """Write a version (wire form) as a NEW local change of the record; return its row.

    Used by conflict resolution: the model row is written (or deleted) through the model, so
    its ordinary signals fire and the change is stamped with a new timestamp that replicates.
    With ``force`` a new version is stamped even when the record already holds exactly this
    version (so it replicates and wins everywhere). A tombstone for a record with no model row
    still becomes a new local tombstone. ``ValidationError`` (nothing written) when the version
    does not pass a local write's validation (``registry.ReplicatedModel.validate``).
    """
    rm = registry.get(model_label)
    with transaction.atomic():
        instance = (
            rm.model._default_manager.select_for_update()
            .filter(**{rm.natural_key_field: natural_key})
            .first()
        )
        before = (
            ReplicatedRecord.objects.filter(model_label=rm.label, natural_key=natural_key)
            .values_list("seq", flat=True)
            .first()
        )
        target: models.Model
        if deleted:
            if instance is not None:
                target = instance
                instance.delete()
                setattr(target, rm.natural_key_field, natural_key)
            else:
                target = rm.model()
                setattr(target, rm.natural_key_field, natural_key)
        else:
            target = instance if instance is not None else rm.model()
            rm.deserialize_into(target, dict(data or {}))
            setattr(target, rm.natural_key_field, natural_key)
            # A kept version (a conflict's, possibly from before this node validated received
            # versions) is written only if it passes a local write's validation.
            rm.validate(target)
            target.save()
        record = ReplicatedRecord.objects.filter(
            model_label=rm.label, natural_key=natural_key
        ).first()
        if record is None or (force and record.seq == before):
            record = replication_record_local_change(instance=target, deleted=deleted, force=True)
        return record


# --- validating and applying remote changes ---------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One version of a record as it travels: ``{"hlc", "origin", "deleted", "data"}``."""

    hlc: HLC
    origin: str
    deleted: bool
    data: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hlc": str(self.hlc),
            "origin": self.origin,
            "deleted": self.deleted,
            "data": self.data,
        }


@dataclass(frozen=True)
class ParsedChange:
    """A validated feed item."""

    model: registry.ReplicatedModel
    key: str
    version: Version
    vv: dict[str, str]
    losers: list[Version] = field(default_factory=list)
    resolved: list[tuple[frozenset[str], str]] = field(default_factory=list)


@dataclass
class ItemResult:
    """What applying one item did: ``applied``, ``stale``, ``conflict`` or ``quarantined``.

    ``unreadable`` is set when the item holds ciphertext made with a key this node's keyring does
    not have: it is stored and relayed as-is, and reported rather than failing the batch.
    ``reason`` (quarantined items only) says why this node could not store it; never a value.
    ``model`` and ``key`` are as the item named them, escaped to ASCII when they are not text a
    node could store.
    """

    index: int
    model: str
    key: str
    status: str
    unreadable: bool = False
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "index": self.index,
            "model": self.model,
            "key": self.key,
            "status": self.status,
            "unreadable": self.unreadable,
        }
        if self.status == QUARANTINED:
            result["reason"] = self.reason
        return result


CLOCK_SKEW = "clock skew"
"""Prefix of the reason of an item held for a timestamp beyond the allowed skew."""


class _Refused(Exception):
    """Why one item of a batch cannot be stored (internal to ``_check_item``)."""

    def __init__(self, *reasons: str) -> None:
        super().__init__(reasons[0])
        self.reasons = list(reasons)


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise _Refused(reason)


@dataclass(frozen=True)
class _Bound:
    """The latest wall time this node accepts in any HLC field of a received item."""

    now_ms: int
    limit_ms: int

    @classmethod
    def now(cls) -> _Bound:
        now = physical_now_ms()
        return cls(now, now + int(app_settings.MAX_CLOCK_SKEW_SECONDS * 1000))

    def stamp(self, text: Any, what: str) -> HLC:
        """Parse an HLC field; refused when malformed or beyond the bound (clock skew)."""
        try:
            stamp = HLC.parse(text)
        except HLCParseError as exc:
            raise _Refused(f"{what}: {exc}") from None
        if stamp.wall_ms > self.limit_ms:
            raise _Refused(
                f"{CLOCK_SKEW}: {what} is {stamp.wall_ms - self.now_ms} ms ahead of this node's "
                f"clock (at most {app_settings.MAX_CLOCK_SKEW_SECONDS} s allowed); held until "
                "it is within the bound"
            )
        return stamp


def _is_node_id(value: Any) -> bool:
    try:
        HLC.parse(f"{0:015d}:{0:08d}:{value}" if isinstance(value, str) else None)
    except HLCParseError:
        return False
    return True


# Django's messages for these codes never quote the value; any other code is reported by name.
_SAFE_CODES = {
    "max_length",
    "blank",
    "null",
    "invalid_key",
    "invalid_name",
    "unstorable",
    "invalid_token",
    "not_canonical",
    "invalid_json",
    "invalid_int",
    "invalid_float",
    "invalid_bool",
    "invalid_url",
    "invalid_type",
}


def validation_reasons(exc: ValidationError) -> list[str]:
    """``field: message`` per problem of a model's validation; never a value."""
    reasons: list[str] = []
    by_field = exc.error_dict if hasattr(exc, "error_dict") else {"data": exc.error_list}
    for name, errors in by_field.items():
        for error in errors:
            for leaf in error.error_list if hasattr(error, "error_list") else [error]:
                if leaf.code is None or leaf.code in _SAFE_CODES:
                    message = leaf.message % leaf.params if leaf.params else leaf.message
                else:
                    message = f"invalid ({leaf.code})"
                reasons.append(f"{name}: {message}")
    return reasons or ["data: invalid"]


def _wire_type_problem(f: models.Field, value: Any) -> str | None:
    """Whether ``value`` has the JSON type the wire form of ``f`` carries (no coercion: a list
    where a scalar belongs, a number for text, a string for a flag are refused)."""
    if value is None:
        return None if f.null else "must not be null"
    if is_encrypted_field(f):
        return None if is_token(value) else "must be a configsync ciphertext token or null"
    if isinstance(f, models.BooleanField):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(f, models.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if isinstance(f, models.JSONField):
        return None
    return None if isinstance(value, str) else "must be a string"


def _check_key(rm: registry.ReplicatedModel, key: Any) -> str:
    _require(
        isinstance(key, str) and 0 < len(key) <= 255,
        "key must be a non-empty string of at most 255 characters",
    )
    field_ = rm.model._meta.get_field(rm.natural_key_field)
    assert isinstance(field_, models.Field)
    try:
        field_.clean(key, None)
    except ValidationError as exc:
        raise _Refused(*(f"key: {r.split(': ', 1)[1]}" for r in validation_reasons(exc))) from None
    return str(key)


def _validate_data(rm: registry.ReplicatedModel, key: str, data: Any) -> dict[str, Any]:
    """The wire form, validated exactly like a local write of the record (see the registry)."""
    _require(isinstance(data, dict), "data must be an object (or null for a tombstone)")
    fields = {f.name: f for f in rm.fields()}
    unknown = sorted(set(data) - set(fields))
    _require(
        not unknown,
        f"unknown fields: {', '.join(_escape(name, 64) for name in unknown[:20])}",
    )
    problems = [
        f"{name}: {problem}"
        for name, value in data.items()
        if (problem := _wire_type_problem(fields[name], value))
    ]
    if rm.natural_key_field in data and data[rm.natural_key_field] != key:
        problems.append(f"{rm.natural_key_field} does not match the item's key")
    if problems:
        raise _Refused(*problems)
    instance = rm.model()
    try:
        rm.deserialize_into(instance, dict(data))
        setattr(instance, rm.natural_key_field, key)
        rm.validate(instance)
    except ValidationError as exc:
        raise _Refused(*validation_reasons(exc)) from None
    except (TypeError, ValueError) as exc:
        raise _Refused(f"data: invalid ({type(exc).__name__})") from None
    return dict(data)


def _parse_version(
    rm: registry.ReplicatedModel, key: str, raw: dict[str, Any], bound: _Bound, what: str
) -> Version:
    stamp = bound.stamp(raw.get("hlc"), f"{what}hlc")
    origin: Any = raw.get("origin")
    _require(_is_node_id(origin), f"{what}origin must be a node id")
    deleted = raw.get("deleted")
    _require(isinstance(deleted, bool), f"{what}deleted must be a boolean")
    data = raw.get("data")
    if deleted:
        _require(data is None, f"{what}a tombstone carries no data")
        return Version(stamp, origin, True, None)
    return Version(stamp, origin, False, _validate_data(rm, key, data))


def _escape(value: Any, limit: int) -> str:
    from configsync.replication.services.quarantine import escaped

    return escaped(value, limit)


def _check_item(item: Any, bound: _Bound) -> ParsedChange:
    """Validate one feed item; ``_Refused`` with every reason it cannot be stored."""
    _require(isinstance(item, dict), "item must be an object")
    label = item.get("model")
    _require(isinstance(label, str), "model must be a string")
    try:
        rm = registry.get(label)
    except LookupError:
        raise _Refused(f"unknown model {_escape(label, 100)!r}") from None
    key = _check_key(rm, item.get("key"))
    version = _parse_version(rm, key, item, bound, "")
    _require(version.origin == version.hlc.node, "origin must be the node of the timestamp")
    vv = item.get("vv")
    _require(isinstance(vv, dict) and bool(vv), "vv must be a non-empty object")
    _require(len(vv) <= 1000, "vv has more than 1000 entries")
    for node, node_stamp in vv.items():
        _require(_is_node_id(node), "vv: every entry must be keyed by a node id")
        parsed = bound.stamp(node_stamp, f"vv entry {node}")
        _require(parsed.node == node, f"vv entry {node} is a timestamp of another node")
    _require(vv.get(version.hlc.node, "") >= str(version.hlc), "vv does not include the version")
    raw_losers = item.get("losers", [])
    _require(isinstance(raw_losers, list), "losers must be a list")
    losers: list[Version] = []
    for position, raw in enumerate(raw_losers):
        _require(isinstance(raw, dict), "a loser must be an object")
        try:
            losers.append(_parse_version(rm, key, raw, bound, f"losers[{position}]."))
        except _Refused as refused:
            if any(reason.startswith(CLOCK_SKEW) for reason in refused.reasons):
                raise
            # A loser is only kept for review, never applied: one this node could not store
            # (e.g. relayed from a conflict kept before versions were validated) is left out
            # rather than holding back the version that beat it.
            logger.warning(
                "replication: not keeping loser %d of %s:%s: %s",
                position,
                rm.label,
                key,
                "; ".join(refused.reasons)[:300],
            )
    return ParsedChange(
        model=rm,
        key=key,
        version=version,
        vv=dict(vv),
        losers=losers,
        resolved=_parse_resolved(item.get("resolved", []), bound),
    )


def _parse_resolved(raw: Any, bound: _Bound) -> list[tuple[frozenset[str], str]]:
    _require(isinstance(raw, list), "resolved must be a list")
    notes: list[tuple[frozenset[str], str]] = []
    for note in raw:
        versions = note.get("versions") if isinstance(note, dict) else None
        chosen = note.get("chosen") if isinstance(note, dict) else None
        _require(
            isinstance(versions, list) and len(versions) == 2,
            "resolved: each note needs two version timestamps and the chosen one",
        )
        assert isinstance(versions, list)
        for text in [*versions, chosen]:
            bound.stamp(text, "resolved")
        _require(chosen in versions, "resolved: the chosen timestamp must be one of the versions")
        notes.append((frozenset(versions), str(chosen)))
    return notes


@dataclass(frozen=True)
class _Held:
    """An item this node does not apply now: quarantined with ``reason``."""

    item: Any
    reason: str


def changes_check(changes: Any) -> list[ParsedChange | _Held]:
    """Check a batch: one entry per item, the parsed change or why it is held.

    Raises ``ChangeValidationError`` only for the batch itself (not a list, more than
    ``MAX_PUSH_BATCH`` items). Each item must name a registered model and a key its natural-key
    field accepts, at most once per batch; carry an origin that is the node of its timestamp; a
    version vector of node ids to their own timestamps that includes the version; losers and
    ``resolved`` notes of the same shape; and data that passes exactly the validation of a local
    write of that record (types, sizes, characters, key, the kind's rules, ciphertext bound to the
    record when this node holds the key — see ``registry.ReplicatedModel.validate``). Every HLC
    field (version, vector entries, losers, notes) must be at most ``MAX_CLOCK_SKEW_SECONDS``
    ahead of this node's physical clock; beyond it the item is held for clock skew.
    """
    if not isinstance(changes, list):
        raise ChangeValidationError([{"index": -1, "reason": "changes must be a list"}])
    limit = app_settings.MAX_PUSH_BATCH
    if len(changes) > limit:
        raise ChangeValidationError(
            [{"index": -1, "reason": f"batch of {len(changes)} exceeds the maximum of {limit}"}]
        )
    bound = _Bound.now()
    checked: list[ParsedChange | _Held] = []
    seen: set[tuple[str, str]] = set()
    for item in changes:
        try:
            change = _check_item(item, bound)
            ident = (change.model.label, change.key)
            _require(ident not in seen, "the batch names this record twice")
            seen.add(ident)
        except _Refused as refused:
            checked.append(_Held(item, "; ".join(refused.reasons)[:2000]))
        else:
            checked.append(change)
    return checked


def _unreadable(data: dict[str, Any] | None, rm: registry.ReplicatedModel) -> bool:
    if not data:
        return False
    try:
        keyring = get_keyring()
    except Exception:  # no usable keyring: nothing is readable here
        return any(data.get(name) for name in rm.encrypted_field_names())
    for name in rm.encrypted_field_names():
        token = data.get(name)
        if token and token_key_id(token) not in keyring:
            return True
    return False


def changes_apply(
    *,
    changes: Any,
    source_node: str,
    source_name: str,
    checkpoint: tuple[int, str] | None = None,
    source_skew_ms: int | None = None,
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
    """
    checked = changes_check(changes)
    context = _ApplyContext(source_node, source_name, source_skew_ms)
    per_item = False
    for attempt in range(_APPLY_ATTEMPTS):
        try:
            with transaction.atomic():
                results = _apply_checked(checked, changes, context, per_item=per_item)
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
    from configsync.replication.services.quarantine import quarantine_keep

    quarantine_keep(
        item=item, reason=reason, source=context.source_name, source_node=context.source_node
    )
    fields = item if isinstance(item, dict) else {}
    logger.warning(
        "replication: quarantined %s:%s from %s: %s",
        _escape(fields.get("model"), 100),
        _escape(fields.get("key"), 255),
        context.source_name,
        reason[:300],
    )
    return ItemResult(
        index=index,
        model=_escape(fields.get("model"), 100),
        key=_escape(fields.get("key"), 255),
        status=QUARANTINED,
        reason=reason,
    )


def _apply_checked(
    checked: list[ParsedChange | _Held],
    items: list[Any],
    context: _ApplyContext,
    *,
    per_item: bool,
) -> list[ItemResult]:
    results: dict[int, ItemResult] = {}
    parsed: list[tuple[int, ParsedChange]] = []
    for index, entry in enumerate(checked):
        if isinstance(entry, _Held):
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


@dataclass
class _Pending:
    record: ReplicatedRecord
    label: str
    key: str
    deleted: bool
    notify: bool


def _apply_parsed(parsed: list[ParsedChange], context: _ApplyContext) -> list[ItemResult]:
    source_node, source_name = context.source_node, context.source_name
    results: list[ItemResult] = []
    pending: list[_Pending] = []
    newest: HLC | None = None
    by_index: dict[int, ItemResult] = {}
    instances, records = _lock_batch(parsed)
    # Batch order is the sender's feed order: a change that depends on an earlier one (e.g. a
    # provider made default after the previous default was cleared) applies after it.
    for index in range(len(parsed)):
        change = parsed[index]
        rm = change.model
        remote = change.version
        newest = remote.hlc if newest is None or remote.hlc > newest else newest
        instance = instances.get((rm.label, change.key))
        record = records.get((rm.label, change.key))
        local = _version_of(record)
        local_vv: dict[str, str] = dict(record.version_vector) if record is not None else {}

        if record is not None and vv_leq(change.vv, local_vv):
            status = STALE
        elif record is None or vv_leq(local_vv, change.vv):
            status = APPLIED
            if local is None or local.hlc != remote.hlc or local.deleted != remote.deleted:
                _write_model(rm, change.key, instance, remote)
            record = _set_version(record, rm.label, change.key, remote, change.vv)
            record.received_from = source_node
            pending.append(_Pending(record, rm.label, change.key, remote.deleted, True))
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
            merged = vv_merge(local_vv, change.vv)
            if remote_wins:
                _write_model(rm, change.key, instance, remote)
                record = _set_version(record, rm.label, change.key, remote, merged)
            else:
                record.version_vector = merged
            # The merged version differs from what the source sent: it goes back to it too,
            # carrying the loser, so the source keeps the same conflict.
            record.received_from = ""
            pending.append(_Pending(record, rm.label, change.key, record.deleted, remote_wins))
            _conflict_keep(
                rm.label,
                change.key,
                source_name,
                local=local,
                remote=remote,
                winner="remote" if remote_wins else "local",
                skew_affected=_skew_affected(local, remote, context.source_skew_ms),
            )
        for loser in change.losers:
            _loser_keep(rm.label, change.key, source_name, before=local, winner=remote, loser=loser)
        for versions, chosen in change.resolved:
            _conflict_close(rm.label, change.key, versions, chosen, str(remote.hlc))
        result = ItemResult(
            index=index,
            model=rm.label,
            key=change.key,
            status=status,
            unreadable=_unreadable(remote.data, rm) if status != STALE else False,
        )
        if record is not None and status != STALE:
            record.unreadable = _unreadable(record.data, rm)
        by_index[index] = result
    results = [by_index[i] for i in range(len(parsed))]

    if pending:
        clock = clock_locked()
        if newest is not None:
            clock.last_wall_ms, clock.last_logical = receive(
                clock.last_wall_ms, clock.last_logical, newest, now_ms=physical_now_ms()
            )
        created: list[ReplicatedRecord] = []
        updated: list[ReplicatedRecord] = []
        now = timezone.now()
        for item in pending:
            clock.last_seq += 1
            item.record.seq = clock.last_seq
            item.record.updated_at = now
            (updated if item.record.pk else created).append(item.record)
            if item.notify:
                _notify_after_commit(
                    item.label, item.key, item.record.seq, item.deleted, local=False
                )
        ReplicatedRecord.objects.bulk_create(created)
        ReplicatedRecord.objects.bulk_update(updated, _RECORD_FIELDS)
        clock.save()
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


def _lock_batch(
    parsed: list[ParsedChange],
) -> tuple[dict[tuple[str, str], models.Model], dict[tuple[str, str], ReplicatedRecord]]:
    """Lock the model rows, then the replication rows, of every record of the batch.

    Same order as a local write (model row, replication row, then the clock), so a batch and a
    concurrent local write of one record never deadlock; two queries per model, not per item.
    """
    keys: dict[str, list[str]] = {}
    models_by_label: dict[str, registry.ReplicatedModel] = {}
    for change in parsed:
        keys.setdefault(change.model.label, []).append(change.key)
        models_by_label[change.model.label] = change.model
    instances: dict[tuple[str, str], models.Model] = {}
    records: dict[tuple[str, str], ReplicatedRecord] = {}
    for label, names in keys.items():
        rm = models_by_label[label]
        field_name = rm.natural_key_field
        for instance in rm.model._default_manager.select_for_update().filter(
            **{f"{field_name}__in": names}
        ):
            instances[(label, rm.natural_key(instance))] = instance
        for record in ReplicatedRecord.objects.select_for_update().filter(
            model_label=label, natural_key__in=names
        ):
            records[(label, record.natural_key)] = record
    return instances, records


def _version_of(record: ReplicatedRecord | None) -> Version | None:
    if record is None:
        return None
    return Version(HLC.parse(record.hlc), record.origin_node, record.deleted, record.data)


def _set_version(
    record: ReplicatedRecord | None,
    label: str,
    key: str,
    version: Version,
    vv: dict[str, str],
) -> ReplicatedRecord:
    if record is None:
        record = ReplicatedRecord(model_label=label, natural_key=key)
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


def _conflict_exists(label: str, key: str, hlcs: set[str]) -> bool:
    for local_version, remote_version in Conflict.objects.filter(
        model_label=label, natural_key=key
    ).values_list("local_version", "remote_version"):
        if {local_version.get("hlc"), remote_version.get("hlc")} == hlcs:
            return True
    return False


def _skew_affected(local: Version, remote: Version, source_skew_ms: int | None) -> bool:
    """Whether the source's clock skew may have decided between ``local`` and ``remote``: it
    exceeds ``SKEW_WARNING_SECONDS`` and the versions' wall times are closer than it."""
    if source_skew_ms is None:
        return False
    skew = abs(source_skew_ms)
    if skew <= app_settings.SKEW_WARNING_SECONDS * 1000:
        return False
    return abs(local.hlc.wall_ms - remote.hlc.wall_ms) <= skew


def _conflict_keep(
    label: str,
    key: str,
    source: str,
    *,
    local: Version,
    remote: Version,
    winner: str,
    skew_affected: bool = False,
) -> None:
    if _conflict_exists(label, key, {str(local.hlc), str(remote.hlc)}):
        return
    conflict_create(
        model_label=label,
        natural_key=key,
        source=source,
        local_version=local.as_dict(),
        remote_version=remote.as_dict(),
        winner=winner,
        skew_affected=skew_affected,
    )


def _conflict_close(label: str, key: str, versions: frozenset[str], chosen: str, by: str) -> None:
    """Close our open conflict between ``versions``: another node resolved it with ``by``."""
    for conflict in Conflict.objects.select_for_update().filter(
        model_label=label, natural_key=key, status=Conflict.Status.OPEN
    ):
        if {conflict.local_version.get("hlc"), conflict.remote_version.get("hlc")} != versions:
            continue
        conflict.status = Conflict.Status.RESOLVED
        conflict.resolution = (
            Conflict.Winner.LOCAL
            if conflict.local_version.get("hlc") == chosen
            else Conflict.Winner.REMOTE
        )
        conflict.resolved_at = timezone.now()
        conflict.resolved_hlc = by
        conflict.save(update_fields=["status", "resolution", "resolved_at", "resolved_hlc"])


def _loser_keep(
    label: str, key: str, source: str, *, before: Version | None, winner: Version, loser: Version
) -> None:
    """Keep a loser another node recorded, so every node holds the same conflict for review."""
    if loser.hlc == winner.hlc:
        return
    for existing in Conflict.objects.filter(model_label=label, natural_key=key).values_list(
        "local_version", "remote_version", "winner"
    ):
        local_version, remote_version, side = existing
        losing = remote_version if side == Conflict.Winner.LOCAL else local_version
        if losing.get("hlc") == str(loser.hlc):
            return
    if before is not None and before.hlc == loser.hlc:
        _conflict_keep(label, key, source, local=loser, remote=winner, winner="remote")
    else:
        _conflict_keep(label, key, source, local=winner, remote=loser, winner="local")


def replication_backfill() -> int:
    """Give every model row that has no live replication row a first version; return how many.

    Rows written while replication was not wired (data loaded with ``raw`` fixtures, rows that
    predate a model's registration) would otherwise never reach a peer until edited. Runs after
    ``migrate`` (``post_migrate``); costs one pass over the records, so it is not run per cycle.
    """
    count = 0
    for rm in registry.all_registered():
        model = rm.model
        live = set(
            ReplicatedRecord.objects.filter(model_label=rm.label, deleted=False).values_list(
                "natural_key", flat=True
            )
        )
        missing = [
            instance
            for instance in model._default_manager.all().iterator()
            if rm.natural_key(instance) not in live
        ]
        for start in range(0, len(missing), 500):
            with transaction.atomic():
                for instance in missing[start : start + 500]:
                    if replication_record_local_change(instance=instance, deleted=False):
                        count += 1
    if count:
        logger.info("replication: gave %d existing records their first version", count)
    return count
