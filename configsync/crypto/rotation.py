"""Encryption keys: generation, usage report and rotation of every encrypted value.

Rotation re-encrypts each token that is not on the primary (first) key of
``CONFIGSYNC_ENCRYPTION_KEYS``. It is maintenance, not a change of the value:

* rows are written with ``QuerySet.update()`` of the new token only, so no ``save()`` runs, no
  signal fires, ``updated_at`` and the record's version token stay as they were, and nothing
  replicates because of it;
* rows are walked by primary key in batches, one transaction per batch, each batch's rows locked
  (``select_for_update``) so a concurrent write is never overwritten with the older value;
* the change feed's stored wire form of the record (``ReplicatedRecord.data``) gets the same new
  token, again by ``update()`` and without a new version, so peers are never served tokens of a
  key about to be removed;
* the versions kept in conflicts (``Conflict.local_version``/``remote_version``, wire form) are
  re-encrypted too, in their own batches: resolving an old conflict writes its token back into
  the record, so it must still be readable once the old key is dropped. A kept version's token
  is bound to the record it belongs to (the conflict's model label and natural key and the wire
  form's field name), exactly as if the record held it;
* the versions kept in the history (``RecordVersion.data``, wire form, what ``configsync
  rollback`` writes back) are re-encrypted the same way, bound to their record like the record's
  own tokens, in their own batches; within a batch one old token gets one new token, so versions
  that shared a token (an unchanged secret) still share one;
* the feed copies of registered models' *sensitive* fields (``auth.user.password``: plain in
  its row, sealed only in the feed) are walked in their own batches and rotated the same way;
* it is idempotent: a token already on the primary key is left alone, so an interrupted run is
  resumed by running it again;
* a token no configured key can decrypt is reported (model, field, natural key and the reason,
  never a value) and skipped; the rest is still rotated;
* every run (complete or stopped early) writes one ``AuditEvent`` (``action="rotate_keys"``)
  whose details hold the counts, the primary key id and whether it completed.

Every model with an :class:`~configsync.crypto.fields.EncryptedTextField` is found through
``django.apps``, so models added later (users, a deployment's own models) rotate too.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models, transaction

from configsync.conf import app_settings
from configsync.crypto.fields import (
    Ciphertext,
    EncryptedTextField,
    encryption_context,
    encryption_context_for,
)
from configsync.crypto.keyring import TokenError, generate_key, get_keyring, token_key_id
from configsync.models import AuditEvent, Conflict, RecordVersion, ReplicatedRecord
from configsync.replication import registry
from configsync.services.audit import audit_action

logger = logging.getLogger(__name__)

_CONFLICT_SIDES = ("local_version", "remote_version")


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

    ``scanned`` counts records (rows and conflicts); ``rotated``, ``already_current`` and
    ``unreadable`` count tokens, those of kept conflict versions included.
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


def _conflict_tokens(conflict: Conflict) -> Iterator[tuple[str, str, str]]:
    """``(side, field name, token)`` of each encrypted value kept in ``conflict``'s versions.

    Which wire-form fields are encrypted comes from the replication registry (a plain value that
    happens to look like a token is not one); a conflict of a model no longer registered has none.
    """
    try:
        names = registry.get(conflict.model_label).encrypted_field_names()
    except LookupError:
        return
    for side in _CONFLICT_SIDES:
        version = getattr(conflict, side)
        data = version.get("data") if isinstance(version, dict) else None
        if not isinstance(data, dict):
            continue
        for name in names:
            token = data.get(name)
            if isinstance(token, str) and token:
                yield side, name, token


def keys_status() -> KeyUsageReport:
    """Count stored tokens per key id (conflict versions included), without decrypting."""
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
    for conflict in _conflicts().iterator():
        for _side, _name, token in _conflict_tokens(conflict):
            count(token)
    for version in _versions().iterator():
        for _name, token in _version_tokens(version):
            count(token)
    sealed = _sealed_fields()
    for record in _sealed_records().iterator():
        data = record.data if isinstance(record.data, dict) else {}
        for name in sealed.get(record.model_label, []):
            if isinstance(data.get(name), str) and data[name]:
                count(data[name])
    return KeyUsageReport(
        primary_key_id=keyring.primary.kid,
        configured_key_ids=[key.kid for key in keyring.keys],
        tokens_by_key_id=dict(counts),
    )


def _rotated(
    token: str, *, context: str, report: RotationReport, where: tuple[str, str, str]
) -> str | None:
    """``token`` re-encrypted with the primary key, or ``None`` when it stays as it is.

    A token already on the primary key is counted as current; one no key can read is reported
    (``where`` = model, field, record; never a value) and left alone.
    """
    keyring = get_keyring()
    try:
        if token_key_id(token) == keyring.primary.kid:
            report.already_current += 1
            return None
        plaintext = keyring.decrypt(token, context=context)
    except TokenError as exc:
        model, field_name, record = where
        report.unreadable.append(
            UnreadableValue(model=model, field=field_name, record=record, reason=str(exc))
        )
        return None
    report.rotated += 1
    return keyring.encrypt(plaintext, context=context)


def _mirror_into_replication_record(
    model: type[models.Model], *, natural_key: str, tokens: dict[str, tuple[str, str]]
) -> None:
    """Give the record's stored wire form (the change feed's copy) the same new tokens.

    Without it the feed would keep serving tokens of a key about to be removed, and the next
    unchanged save would look like a change (row token != feed token). Only a token equal to the
    one just rotated is replaced; the version (seq, HLC) is untouched: not a change of the value.
    A model that does not replicate (the .env bridge's bases) has no feed copy.
    """
    if registry.for_model(model) is None:
        return
    record = (
        ReplicatedRecord.objects.select_for_update()
        .filter(model_label=model._meta.label_lower, natural_key=natural_key)
        .first()
    )
    data = getattr(record, "data", None)
    if record is None or not isinstance(data, dict):
        return
    updated = dict(data)
    for name, (old, new) in tokens.items():
        if updated.get(name) == str(old):
            updated[name] = str(new)
    if updated != data:
        ReplicatedRecord.objects.filter(pk=record.pk).update(data=updated)


def _rotate_batch(
    model: type[models.Model],
    fields: list[EncryptedTextField],
    *,
    after_pk: object,
    batch_size: int,
    report: RotationReport,
) -> object | None:
    """Rotate the next ``batch_size`` rows after ``after_pk``; the last pk seen, or ``None``."""
    natural_key_field: str = model.natural_key_field  # type: ignore[attr-defined]
    label = model._meta.label_lower
    queryset = _with_any_token(model, fields).order_by("pk")
    if after_pk is not None:
        queryset = queryset.filter(pk__gt=after_pk)
    with transaction.atomic():
        rows = list(
            queryset.select_for_update().only(
                "pk", natural_key_field, *(f.attname for f in fields)
            )[:batch_size]
        )
        for row in rows:
            report.scanned += 1
            natural_key = str(getattr(row, natural_key_field))
            updates: dict[str, Ciphertext] = {}
            changes: dict[str, tuple[str, str]] = {}
            for f in fields:
                token = row.__dict__.get(f.attname)
                if token is None:
                    continue
                new = _rotated(
                    token,
                    context=encryption_context(row, f.name),
                    report=report,
                    where=(label, f.name, natural_key),
                )
                if new is not None:
                    updates[f.attname] = Ciphertext(new)
                    changes[f.name] = (str(token), new)
            if updates:
                # update(), not save(): no signal, no updated_at, nothing to replicate.
                model._base_manager.filter(pk=row.pk).update(**updates)
                _mirror_into_replication_record(model, natural_key=natural_key, tokens=changes)
    if rows:
        report.batches += 1
    if len(rows) < batch_size:
        return None
    return rows[-1].pk


def _conflicts() -> models.QuerySet[Conflict]:
    return Conflict.objects.order_by("pk").only(
        "pk", "model_label", "natural_key", *_CONFLICT_SIDES
    )


def _rotate_conflict_batch(
    *, after_pk: object, batch_size: int, report: RotationReport
) -> object | None:
    """Rotate the tokens kept in the next ``batch_size`` conflicts; the last pk, or ``None``."""
    queryset = _conflicts()
    if after_pk is not None:
        queryset = queryset.filter(pk__gt=after_pk)
    with transaction.atomic():
        conflicts = list(queryset.select_for_update()[:batch_size])
        for conflict in conflicts:
            report.scanned += 1
            versions = {side: copy.deepcopy(getattr(conflict, side)) for side in _CONFLICT_SIDES}
            changed = False
            for side, name, token in _conflict_tokens(conflict):
                new = _rotated(
                    token,
                    context=encryption_context_for(
                        model_label=conflict.model_label,
                        field_name=name,
                        natural_key=conflict.natural_key,
                    ),
                    report=report,
                    where=(
                        conflict.model_label,
                        name,
                        f"{conflict.natural_key}, conflict {conflict.pk} {side}",
                    ),
                )
                if new is not None:
                    versions[side]["data"][name] = new
                    changed = True
            if changed:
                Conflict.objects.filter(pk=conflict.pk).update(**versions)
    if conflicts:
        report.batches += 1
    if len(conflicts) < batch_size:
        return None
    return conflicts[-1].pk


def _versions() -> models.QuerySet[RecordVersion]:
    return (
        RecordVersion.objects.filter(deleted=False, model_label__in=_encrypted_labels())
        .order_by("pk")
        .only("pk", "model_label", "natural_key", "data")
    )


def _encrypted_labels() -> list[str]:
    return [rm.label for rm in registry.all_registered() if rm.encrypted_field_names()]


def _version_tokens(version: RecordVersion) -> Iterator[tuple[str, str]]:
    """``(field name, token)`` of each encrypted value kept in a history version."""
    try:
        names = registry.get(version.model_label).encrypted_field_names()
    except LookupError:
        return
    data = version.data if isinstance(version.data, dict) else {}
    for name in names:
        token = data.get(name)
        if isinstance(token, str) and token:
            yield name, token


_RENEWED_MAX = 10_000


def _rotate_version_batch(
    *,
    after_pk: object,
    batch_size: int,
    report: RotationReport,
    renewed: dict[tuple[str, str, str, str], str],
) -> object | None:
    """Rotate the tokens kept in the next ``batch_size`` history versions; the last pk, or
    ``None``. Not a change of any value: ``update()`` of ``data`` only. ``renewed`` (shared by the
    run's batches, bounded) maps an old token to its new one, so versions that shared a token
    (an unchanged secret) keep sharing one and the history still shows them as the same value
    without decrypting."""
    queryset = _versions()
    if after_pk is not None:
        queryset = queryset.filter(pk__gt=after_pk)
    if len(renewed) > _RENEWED_MAX:
        renewed.clear()
    with transaction.atomic():
        versions = list(queryset.select_for_update()[:batch_size])
        for version in versions:
            report.scanned += 1
            data = dict(version.data) if isinstance(version.data, dict) else {}
            changed = False
            for name, token in _version_tokens(version):
                memo = (version.model_label, version.natural_key, name, token)
                new = renewed.get(memo)
                if new is None:
                    new = _rotated(
                        token,
                        context=encryption_context_for(
                            model_label=version.model_label,
                            field_name=name,
                            natural_key=version.natural_key,
                        ),
                        report=report,
                        where=(
                            version.model_label,
                            name,
                            f"{version.natural_key}, history version {version.number}",
                        ),
                    )
                    if new is None:
                        continue
                    renewed[memo] = new
                else:
                    report.rotated += 1
                data[name] = new
                changed = True
            if changed:
                RecordVersion.objects.filter(pk=version.pk).update(data=data)
    if versions:
        report.batches += 1
    if len(versions) < batch_size:
        return None
    return versions[-1].pk


def _sealed_fields() -> dict[str, list[str]]:
    """Registered models' *sensitive* fields (stored plainly, sealed only in the feed copy)."""
    return {rm.label: sorted(rm.sensitive) for rm in registry.all_registered() if rm.sensitive}


def _sealed_records() -> models.QuerySet[ReplicatedRecord]:
    return (
        ReplicatedRecord.objects.filter(model_label__in=list(_sealed_fields()), deleted=False)
        .order_by("pk")
        .only("pk", "model_label", "natural_key", "data")
    )


def _rotate_sealed_batch(
    *, after_pk: object, batch_size: int, report: RotationReport
) -> object | None:
    """Rotate the tokens of sensitive fields (``auth.user.password``) in the feed's copies.

    Their model row holds the plain value, so only the feed copy has a token; it is rotated in
    place like a mirrored token (same seq and HLC: not a change of the value)."""
    fields = _sealed_fields()
    queryset = _sealed_records()
    if after_pk is not None:
        queryset = queryset.filter(pk__gt=after_pk)
    with transaction.atomic():
        records = list(queryset.select_for_update()[:batch_size])
        for record in records:
            report.scanned += 1
            data = dict(record.data) if isinstance(record.data, dict) else {}
            changed = False
            for name in fields.get(record.model_label, []):
                token = data.get(name)
                if not isinstance(token, str) or not token:
                    continue
                new = _rotated(
                    token,
                    context=encryption_context_for(
                        model_label=record.model_label,
                        field_name=name,
                        natural_key=record.natural_key,
                    ),
                    report=report,
                    where=(record.model_label, name, record.natural_key),
                )
                if new is not None:
                    data[name] = new
                    changed = True
            if changed:
                ReplicatedRecord.objects.filter(pk=record.pk).update(data=data)
    if records:
        report.batches += 1
    if len(records) < batch_size:
        return None
    return records[-1].pk


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
    walks: list[functools.partial[object | None]] = [
        functools.partial(_rotate_batch, model, fields, batch_size=size, report=report)
        for model, fields in encrypted_models()
    ]
    walks.append(functools.partial(_rotate_sealed_batch, batch_size=size, report=report))
    walks.append(functools.partial(_rotate_conflict_batch, batch_size=size, report=report))
    walks.append(
        functools.partial(_rotate_version_batch, batch_size=size, report=report, renewed={})
    )
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
