"""Recording local writes of replicated records as new versions in the change feed.

A local write (or delete) of a registered model is stamped with a new HLC from the locked
``NodeClock`` (``configsync.replication.services.clock``) in the writer's transaction, its version
vector advanced and its wire form stored; ``change_committed(local=True)`` follows the commit.
``replication_write_version`` writes a kept version (conflict resolution) as a new local change;
``replication_backfill`` gives rows that predate replication their first version.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction

from configsync.crypto.keyring import get_keyring, token_key_id
from configsync.models import ReplicatedRecord
from configsync.replication import registry
from configsync.replication.hooks import before_apply
from configsync.replication.services.clock import clock_issue
from configsync.replication.services.history import Changed, history_record
from configsync.signals import change_committed

logger = logging.getLogger(__name__)


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

    Runs in the caller's transaction, without a savepoint of its own (a failure here fails the
    caller's write, as it would anyway), or in its own: stamps a new HLC, sets
    ``version_vector[this node]`` to it, stores the wire form (``None`` for a tombstone), issues
    the next feed sequence number and, after commit, sends ``change_committed(local=True)``.
    A save that leaves the wire form unchanged is not a new version unless ``force``. Returns
    the replication row, or ``None`` when the model does not replicate or nothing changed.
    """
    rm = registry.for_model(type(instance))
    if rm is None:
        return None
    key = rm.natural_key(instance)
    # No savepoint: two round trips less on every local write (measured: bench/push.py).
    with transaction.atomic(savepoint=False):
        record = (
            ReplicatedRecord.objects.select_for_update()
            .filter(model_label=rm.label, natural_key=key)
            .first()
        )
        previous = record.data if record is not None and not record.deleted else None
        data = None if deleted else json_safe(rm.serialize(instance, previous))
        if not force and record is not None and record.deleted == deleted and record.data == data:
            return None
        issued, seq = clock_issue(
            after=[record.hlc, *(record.version_vector or {}).values()] if record else None
        )
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
        record.unreadable = data_unreadable(data, rm)
        record.save()
        history_record(changes=[Changed(record=record, before=previous)])
        change_notify_after_commit(rm.label, key, record.seq, deleted, local=True)
    return record


def change_notify_after_commit(
    label: str, key: str, seq: int, deleted: bool, *, local: bool
) -> None:
    """Send ``change_committed`` for one change of the feed when the transaction commits."""

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
    plain: dict[str, str] | None = None,
) -> ReplicatedRecord | None:
    """Write a version (wire form) as a NEW local change of the record; return its row.

    Used by conflict resolution, rollback and restore: the model row is written (or deleted)
    through the model, so its ordinary signals fire and the change is stamped with a new
    timestamp that replicates.
    With ``force`` a new version is stamped even when the record already holds exactly this
    version (so it replicates and wins everywhere). A tombstone for a record with no model row
    still becomes a new local tombstone. ``ValidationError`` (nothing written) when the version
    does not pass a local write's validation (``registry.ReplicatedModel.validate``). The
    model's before-apply hook (``replication.hooks``) runs as for a received version, so a kept
    version claiming what another row holds now (the default provider) takes it over.

    ``plain`` (a promoted snapshot's placeholders): plaintext values set through the model after
    the wire form is copied, for encrypted or sensitive fields only, so they are encrypted with
    this node's key; another field name is a ``ValueError`` (nothing written).
    """
    rm = registry.get(model_label)
    unknown = sorted(set(plain or {}) - set(rm.encrypted_field_names()))
    if unknown:
        raise ValueError(f"not encrypted fields of {rm.label}: {', '.join(unknown)}")
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
            for name, value in (plain or {}).items():
                setattr(target, name, value)
            # A kept version (a conflict's, possibly from before this node validated received
            # versions) is written only if it passes a local write's validation.
            rm.validate(target)
            if (hook := before_apply(rm.label)) is not None:  # e.g. one default provider
                hook(target)
            target.save()
            rm.save_related(target)
        record = ReplicatedRecord.objects.filter(
            model_label=rm.label, natural_key=natural_key
        ).first()
        if record is None or (force and record.seq == before):
            record = replication_record_local_change(instance=target, deleted=deleted, force=True)
        return record


def data_unreadable(data: dict[str, Any] | None, rm: registry.ReplicatedModel) -> bool:
    """Whether ``data`` (wire form) holds ciphertext of a key this node's keyring lacks."""
    if not data:
        return False
    tokens = [token for name in rm.encrypted_fields if (token := data.get(name))]
    if not tokens:
        return False
    try:
        keyring = get_keyring()
    except Exception:  # no usable keyring: nothing is readable here
        return True
    return any(token_key_id(token) not in keyring for token in tokens)


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
