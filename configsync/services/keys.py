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
* it is idempotent: a token already on the primary key is left alone, so an interrupted run is
  resumed by running it again;
* a token no configured key can decrypt is reported (model, field, natural key and the reason,
  never a value) and skipped; the rest is still rotated.

Every model with an :class:`~configsync.crypto.fields.EncryptedTextField` is found through
``django.apps``, so models added later (users, a deployment's own models) rotate too.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models, transaction

from configsync.conf import app_settings
from configsync.crypto.errors import DecryptionError
from configsync.crypto.fields import Ciphertext, EncryptedTextField, encryption_context
from configsync.crypto.keyring import TokenError, generate_key, get_keyring, token_key_id

logger = logging.getLogger(__name__)


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
    """What one ``keys_rotate`` run did. ``complete`` is false when stopped by ``max_batches``."""

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


def keys_status() -> KeyUsageReport:
    """Count stored tokens per key id, without decrypting anything."""
    keyring = get_keyring()
    counts: Counter[str] = Counter()
    for model, fields in encrypted_models():
        names = [f.attname for f in fields]
        for row in _with_any_token(model, fields).values_list(*names).iterator():
            for token in row:
                if token is not None:
                    try:
                        counts[token_key_id(token)] += 1
                    except TokenError:
                        counts["<not a token>"] += 1
    return KeyUsageReport(
        primary_key_id=keyring.primary.kid,
        configured_key_ids=[key.kid for key in keyring.keys],
        tokens_by_key_id=dict(counts),
    )


def _mirror_into_replication_record(
    model: type[models.Model], *, natural_key: str, tokens: dict[str, tuple[str, str]]
) -> None:
    """Give the record's stored wire form (the change feed's copy) the same new tokens.

    Without it the feed would keep serving tokens of a key about to be removed, and the next
    unchanged save would look like a change (row token != feed token). Only a token equal to the
    one just rotated is replaced; the version (seq, HLC) is untouched: not a change of the value.
    """
    try:
        record_model = apps.get_model("configsync", "ReplicatedRecord")
    except LookupError:
        return
    record = (
        record_model._base_manager.select_for_update()
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
        record_model._base_manager.filter(pk=record.pk).update(data=updated)


def _rotate_batch(
    model: type[models.Model],
    fields: list[EncryptedTextField],
    *,
    after_pk: object,
    batch_size: int,
    report: RotationReport,
) -> object | None:
    """Rotate the next ``batch_size`` rows after ``after_pk``; the last pk seen, or ``None``."""
    keyring = get_keyring()
    natural_key_field: str = model.natural_key_field  # type: ignore[attr-defined]
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
            changes: dict[str, Ciphertext] = {}
            for f in fields:
                token = row.__dict__.get(f.attname)
                if token is None:
                    continue
                try:
                    if token_key_id(token) == keyring.primary.kid:
                        report.already_current += 1
                        continue
                    plaintext = f.decrypt(row, token)
                except (DecryptionError, TokenError) as exc:
                    reason = exc.reason if isinstance(exc, DecryptionError) else str(exc)
                    report.unreadable.append(
                        UnreadableValue(
                            model=model._meta.label_lower,
                            field=f.name,
                            record=str(getattr(row, natural_key_field)),
                            reason=reason,
                        )
                    )
                    continue
                changes[f.attname] = Ciphertext(
                    keyring.encrypt(plaintext, context=encryption_context(row, f.name))
                )
            if changes:
                # update(), not save(): no signal, no updated_at, nothing to replicate.
                model._base_manager.filter(pk=row.pk).update(**changes)
                report.rotated += len(changes)
                _mirror_into_replication_record(
                    model,
                    natural_key=str(getattr(row, natural_key_field)),
                    tokens={
                        f.name: (row.__dict__[f.attname], changes[f.attname])
                        for f in fields
                        if f.attname in changes
                    },
                )
    if rows:
        report.batches += 1
    if len(rows) < batch_size:
        return None
    return rows[-1].pk


def keys_rotate(*, batch_size: int | None = None, max_batches: int | None = None) -> RotationReport:
    """Re-encrypt every encrypted value not on the primary key; see the module docstring.

    ``batch_size`` rows per transaction (default ``CONFIGSYNC_ROTATION_BATCH_SIZE``);
    ``max_batches`` stops early (``report.complete`` is then false; run again to resume).
    Raises ``KeyringError`` when no usable key is configured; never raises for one bad value.
    """
    size = batch_size or app_settings.ROTATION_BATCH_SIZE
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport(primary_key_id=get_keyring().primary.kid)
    for model, fields in encrypted_models():
        after_pk: object | None = None
        while True:
            if max_batches is not None and report.batches >= max_batches:
                return report
            after_pk = _rotate_batch(
                model, fields, after_pk=after_pk, batch_size=size, report=report
            )
            if after_pk is None:
                break
    report.complete = True
    logger.info(
        "key rotation to %s: %d value(s) rotated, %d already current, %d unreadable",
        report.primary_key_id,
        report.rotated,
        report.already_current,
        len(report.unreadable),
    )
    return report
