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
from django.db import IntegrityError, OperationalError, connection, models, transaction
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
from configsync.services.conflicts import conflict_create
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
    still becomes a new local tombstone.
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
    """What applying one item did: ``applied``, ``stale`` or ``conflict``.

    ``unreadable`` is set when the item holds ciphertext made with a key this node's keyring does
    not have: it is stored and relayed as-is, and reported rather than failing the batch.
    """

    index: int
    model: str
    key: str
    status: str
    unreadable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "model": self.model,
            "key": self.key,
            "status": self.status,
            "unreadable": self.unreadable,
        }


class _Refused(Exception):
    """Why one item of a batch is refused (internal to ``changes_validate``)."""

    def __init__(self, *reasons: str) -> None:
        super().__init__(reasons[0])
        self.reasons = list(reasons)


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise _Refused(reason)


def _is_text(value: Any, *, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _validate_data(rm: registry.ReplicatedModel, key: str, data: Any) -> dict[str, Any]:
    _require(isinstance(data, dict), "data must be an object (or null for a tombstone)")
    fields = {f.name: f for f in rm.fields()}
    unknown = sorted(set(data) - set(fields))
    _require(not unknown, f"unknown fields: {', '.join(name[:64] for name in unknown[:20])}")
    problems: list[str] = []
    for name, value in data.items():
        f = fields[name]
        if is_encrypted_field(f):
            if value is not None and not is_token(value):
                problems.append(f"{name}: must be a configsync ciphertext token or null")
            continue
        try:
            f.clean(value, None)
        except ValidationError as exc:
            # Name the field and the rule (error code), never the value: some of Django's
            # messages quote the value they refused.
            codes = sorted({error.code or "invalid" for error in exc.error_list})
            problems.append(f"{name}: invalid ({', '.join(codes)})")
        except (TypeError, ValueError):
            problems.append(f"{name}: wrong type")
    if rm.natural_key_field in data and str(data[rm.natural_key_field]) != key:
        problems.append(f"{rm.natural_key_field} does not match the item's key")
    if problems:
        raise _Refused(*problems)
    return dict(data)


def _parse_version(rm: registry.ReplicatedModel, key: str, raw: dict[str, Any]) -> Version:
    try:
        stamp = HLC.parse(raw.get("hlc"))
    except HLCParseError as exc:
        raise _Refused(f"hlc: {exc}") from None
    origin: Any = raw.get("origin")
    _require(_is_text(origin, limit=64), "origin must be a node id")
    deleted = raw.get("deleted")
    _require(isinstance(deleted, bool), "deleted must be a boolean")
    data = raw.get("data")
    if deleted:
        _require(data is None, "a tombstone carries no data")
        return Version(stamp, origin, True, None)
    return Version(stamp, origin, False, _validate_data(rm, key, data))


def changes_validate(changes: Any) -> list[ParsedChange]:
    """Validate a whole batch; raise ``ChangeValidationError`` (apply nothing) on any bad item.

    Checks: a list of at most ``MAX_PUSH_BATCH`` objects; each names a registered model and a
    key, at most once per batch; has a parseable HLC not further than ``MAX_CLOCK_SKEW_SECONDS``
    ahead of this node's physical clock; a version vector of HLCs; a tombstone flag; and data
    whose fields exist and whose values pass the fields' own validation (ciphertext is checked
    for shape only, never decrypted). An item is answered with its first structural problem,
    or with every field that fails validation.
    """
    if not isinstance(changes, list):
        raise ChangeValidationError([{"index": -1, "reason": "changes must be a list"}])
    limit = app_settings.MAX_PUSH_BATCH
    if len(changes) > limit:
        raise ChangeValidationError(
            [{"index": -1, "reason": f"batch of {len(changes)} exceeds the maximum of {limit}"}]
        )
    now_ms = physical_now_ms()
    bound_ms = now_ms + int(app_settings.MAX_CLOCK_SKEW_SECONDS * 1000)
    errors: list[dict[str, Any]] = []
    parsed: list[ParsedChange] = []
    seen: set[tuple[str, str]] = set()
    worst_skew: int | None = None
    for index, item in enumerate(changes):
        try:
            change = _parse_item(item)
            ident = (change.model.label, change.key)
            _require(ident not in seen, "the batch names this record twice")
            seen.add(ident)
            skew = change.version.hlc.wall_ms - now_ms
            if change.version.hlc.wall_ms > bound_ms:
                worst_skew = skew if worst_skew is None else max(worst_skew, skew)
                raise _Refused(
                    f"clock skew: timestamp is {skew} ms ahead of this node's clock "
                    f"(at most {app_settings.MAX_CLOCK_SKEW_SECONDS} s allowed)"
                )
        except _Refused as refused:
            errors.extend({"index": index, "reason": reason} for reason in refused.reasons)
        else:
            parsed.append(change)
    if errors:
        raise ChangeValidationError(errors, skew_ms=worst_skew)
    return parsed


def _parse_item(item: Any) -> ParsedChange:
    _require(isinstance(item, dict), "item must be an object")
    label = item.get("model")
    _require(isinstance(label, str), "model must be a string")
    try:
        rm = registry.get(label)
    except LookupError:
        raise _Refused(f"unknown model {label[:100]!r}") from None
    key = item.get("key")
    _require(_is_text(key, limit=255), "key must be a non-empty string of at most 255 characters")
    version = _parse_version(rm, key, item)
    vv = item.get("vv")
    _require(isinstance(vv, dict) and bool(vv), "vv must be a non-empty object")
    for node, node_stamp in vv.items():
        try:
            HLC.parse(node_stamp)
        except HLCParseError:
            raise _Refused(f"vv entry {str(node)[:64]!r} is not a timestamp") from None
    raw_losers = item.get("losers", [])
    _require(isinstance(raw_losers, list), "losers must be a list")
    losers: list[Version] = []
    for raw in raw_losers:
        _require(isinstance(raw, dict), "a loser must be an object")
        losers.append(_parse_version(rm, key, raw))
    return ParsedChange(
        model=rm,
        key=key,
        version=version,
        vv=dict(vv),
        losers=losers,
        resolved=_parse_resolved(item.get("resolved", [])),
    )


def _parse_resolved(raw: Any) -> list[tuple[frozenset[str], str]]:
    _require(isinstance(raw, list), "resolved must be a list")
    notes: list[tuple[frozenset[str], str]] = []
    for note in raw:
        versions = note.get("versions") if isinstance(note, dict) else None
        chosen = note.get("chosen") if isinstance(note, dict) else None
        try:
            if not isinstance(versions, list) or len(versions) != 2:
                raise HLCParseError("versions must be two timestamps")
            for text in [*versions, chosen]:
                HLC.parse(text)
        except HLCParseError:
            raise _Refused(
                "resolved: each note needs two version timestamps and the chosen one"
            ) from None
        _require(chosen in versions, "resolved: the chosen timestamp must be one of the versions")
        notes.append((frozenset(versions), str(chosen)))
    return notes


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

    All or nothing: the batch is validated first (``ChangeValidationError``, nothing applied),
    then applied in one transaction together with, when given, the pull checkpoint
    ``(checkpoint id, new cursor)``. Idempotent and safe under concurrency: items are decided
    under row locks, so the same batch applied twice, ten times or concurrently leaves the state
    of one application (the repeats answer ``stale``). A transaction that loses a race on
    PostgreSQL (deadlock, concurrent insert of the same key) or SQLite (busy) is retried.
    """
    parsed = changes_validate(changes)
    for attempt in range(_APPLY_ATTEMPTS):
        try:
            with transaction.atomic():
                results = _apply_parsed(parsed, source_node=source_node, source_name=source_name)
                if checkpoint is not None:
                    checkpoint_id, cursor = checkpoint
                    PeerCheckpoint.objects.filter(pk=checkpoint_id).update(cursor=cursor)
            return results
        except (IntegrityError, OperationalError) as exc:
            if attempt == _APPLY_ATTEMPTS - 1 or connection.in_atomic_block:
                raise
            logger.info(
                "replication: retrying a batch from %s after %s", source_name, type(exc).__name__
            )
            time.sleep(0.05 * (2**attempt))
    raise AssertionError("unreachable")


@dataclass
class _Pending:
    record: ReplicatedRecord
    label: str
    key: str
    deleted: bool
    notify: bool


def _apply_parsed(
    parsed: list[ParsedChange], *, source_node: str, source_name: str
) -> list[ItemResult]:
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


def _conflict_keep(
    label: str, key: str, source: str, *, local: Version, remote: Version, winner: str
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
