"""Writing snapshots and restoring them (the format: ``configsync.snapshots``).

``snapshot_save`` writes this node's snapshot to a file (atomically, mode 0600).
``snapshot_load`` reads a file or a bucket backup (``bucket:<name>``) and validates its shape
and checksum. ``restore_plan`` checks that this node may restore it — its group, its key ids,
its models — and compares it with this node's records; ``snapshot_restore`` prints nothing and
applies the plan in ONE transaction as new local writes that replicate, each recorded in the
history and the audit trail under ``via="restore"``, plus one node-wide ``restore`` event.
Every refusal is a ``SnapshotError`` raised before anything is written.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from configsync.actor import RESTORE, acting
from configsync.conf import app_settings
from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import get_keyring, is_token
from configsync.logging import register_secret
from configsync.models import ReplicatedRecord
from configsync.replication import registry
from configsync.replication.selectors.history import MASKED_WHEN, version_unmasks
from configsync.replication.services.local import replication_write_version
from configsync.replication.services.wire import validation_reasons
from configsync.services.audit import RevealRequired, audit_action, audit_reveal_written
from configsync.snapshots.document import (
    SnapshotError,
    document_dumps,
    document_loads,
    file_read,
    file_write_private,
)
from configsync.snapshots.promotion import placeholder_matches
from configsync.snapshots.selectors import snapshot_document, token_key_ids

BUCKET_SOURCE = "bucket:"
"""A source naming a backup in the bucket: ``bucket:<name>`` (this node's) or
``bucket:<node>/<name>``."""
ADDED = "added"
CHANGED = "changed"
REMOVED = "removed"
KEPT_ON_PROMOTED_RESTORE = ("users",)
"""Data types a promoted snapshot's restore adds and changes but never removes: every promoted
user's password is unusable, so removing the restoring node's own users would lock its operators
out of their staging or development admin."""
RESTORE_ACTION = "restore"
"""The audit action of a restore as a whole (one event besides each record's own)."""


@dataclass(frozen=True)
class RestoreItem:
    """One record a restore changes: ``action`` (added/changed/removed), the fields that
    differ and, for fields that are not secret, their values before and after."""

    action: str
    model: str
    key: str
    fields: tuple[str, ...] = ()
    secret_fields: tuple[str, ...] = ()
    values: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    deleted: bool = False
    data: dict[str, Any] | None = None
    placeholders: dict[str, str] | None = None
    reveals: bool = False
    """Writing it shows a value the record's history masks (``version_unmasks``): needs the
    reveal right, is audited as a reveal, and its masked fields are reported as secrets."""

    def as_dict(self) -> dict[str, Any]:
        """The item for ``--json`` and the API: names and plain values, never a secret."""
        return {
            "action": self.action,
            "model": self.model,
            "key": self.key,
            "fields": list(self.fields),
            "secret_fields": list(self.secret_fields),
            "changes": {
                name: {"before": before, "after": after}
                for name, (before, after) in self.values.items()
            },
        }


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did (or, with ``dry_run``, would do)."""

    dry_run: bool
    items: list[RestoreItem]
    unchanged: int
    source_node: str
    promoted: bool

    def count(self, action: str) -> int:
        return sum(1 for item in self.items if item.action == action)

    def summary(self) -> str:
        done = "dry run, nothing written" if self.dry_run else "applied"
        return (
            f"{self.count(ADDED)} added, {self.count(CHANGED)} changed, "
            f"{self.count(REMOVED)} removed, {self.unchanged} unchanged "
            f"({done}; snapshot of node {self.source_node})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "source_node": self.source_node,
            "promoted": self.promoted,
            "added": self.count(ADDED),
            "changed": self.count(CHANGED),
            "removed": self.count(REMOVED),
            "unchanged": self.unchanged,
            "items": [item.as_dict() for item in self.items],
        }


def snapshot_save(*, path: Path) -> dict[str, Any]:
    """Write this node's snapshot to ``path`` (atomically, mode 0600); return the document."""
    document = snapshot_document()
    file_write_private(path, document_dumps(document))
    return document


def snapshot_load(*, source: str) -> dict[str, Any]:
    """The validated document of a file path or ``bucket:<name>``; ``SnapshotError`` when it
    cannot be read, is malformed or its checksum fails."""
    if source.startswith(BUCKET_SOURCE):
        from configsync.snapshots.bucket import bucket_snapshot_read

        data = bucket_snapshot_read(name=source[len(BUCKET_SOURCE) :])
    else:
        data = file_read(Path(source))
    return document_loads(data)


def restore_refusals(document: dict[str, Any]) -> None:
    """Refuse (``SnapshotError``) a document this node must not restore: another group, key ids
    this node lacks (named), a model that does not replicate here or a data type the document
    does not declare, ciphertext in a promoted snapshot, placeholders for other fields."""
    promoted = bool(document["promoted"])
    group = str(app_settings.GROUP_ID)
    if not promoted and document["group_id"] != group:
        raise SnapshotError(
            "the snapshot is of another replication group (CONFIGSYNC_GROUP_ID differs)"
        )
    covered = set(document["data_types"])
    for record in document["records"]:
        where = f"{record['model'][:100]} {record['key'][:255]!r}"
        try:
            rm = registry.get(record["model"])
        except LookupError:
            raise SnapshotError(f"{where}: the model does not replicate on this node") from None
        if rm.data_type not in covered:
            raise SnapshotError(f"{where}: its data type is not among the snapshot's data_types")
        data = record["data"] or {}
        if data.get(rm.natural_key_field, record["key"]) != record["key"]:
            # Restore writes the record's key: data naming another would be "changed" forever.
            raise SnapshotError(f"{where}: its {rm.natural_key_field} is not the record's key")
        secret_names = rm.encrypted_field_names()
        for name in secret_names:
            value = data.get(name)
            if value is None:
                continue
            if promoted:
                raise SnapshotError(f"{where}: a promoted snapshot carries no ciphertext")
            if not is_token(value):
                raise SnapshotError(f"{where}: {name} is not a ciphertext token")
        unknown = sorted(set(record.get("placeholders") or {}) - set(secret_names))
        if unknown:
            raise SnapshotError(f"{where}: placeholders for fields that are not secret")
    keyring = get_keyring()
    wanted = set(document["key_ids"]) | token_key_ids(document["records"])
    missing = sorted(kid for kid in wanted if kid not in keyring)
    if missing:
        raise SnapshotError(
            "the snapshot was written under keys this node lacks: key id(s) "
            + ", ".join(missing)
            + " (add them to CONFIGSYNC_ENCRYPTION_KEYS)"
        )


def _plaintext(rm: registry.ReplicatedModel, key: str, name: str, token: Any) -> str | None:
    """The value of one record's secret token, in memory only; ``None`` when it cannot be read."""
    if not isinstance(token, str):
        return None
    context = encryption_context_for(model_label=rm.label, field_name=name, natural_key=key)
    try:
        plain = get_keyring().decrypt(token, context=context)
    except Exception:
        return None
    register_secret(plain)
    return plain


def _same_secret(rm: registry.ReplicatedModel, key: str, name: str, a: Any, b: Any) -> bool:
    """Whether two tokens of one record's field hold the same value (a key rotation re-encrypts
    without changing it); ``False`` when either cannot be read."""
    plain_a = _plaintext(rm, key, name, a)
    plain_b = _plaintext(rm, key, name, b)
    if plain_a is None or plain_b is None:
        return False
    return hmac.compare_digest(plain_a.encode(), plain_b.encode())


def _holds_placeholder(
    rm: registry.ReplicatedModel, key: str, name: str, token: Any, placeholder: str
) -> bool:
    """Whether the record's secret already is what a promoted snapshot's placeholder sets (so
    restoring the same promoted snapshot again writes nothing)."""
    current = _plaintext(rm, key, name, token)
    return current is not None and placeholder_matches(placeholder=placeholder, current=current)


def _differences(
    rm: registry.ReplicatedModel,
    key: str,
    before: dict[str, Any],
    after: dict[str, Any],
    placeholders: dict[str, str],
) -> tuple[list[str], list[str], dict[str, tuple[Any, Any]]]:
    secret = set(rm.encrypted_field_names())

    def differs(name: str) -> bool:
        if name in placeholders:
            return not _holds_placeholder(rm, key, name, before.get(name), placeholders[name])
        return before.get(name) != after.get(name) and not (
            name in secret and _same_secret(rm, key, name, before.get(name), after.get(name))
        )

    names = sorted(name for name in set(after) | set(placeholders) if differs(name))
    secrets = [name for name in names if name in secret]
    values = {name: (before.get(name), after.get(name)) for name in names if name not in secret}
    return names, secrets, values


def restore_plan(document: dict[str, Any]) -> tuple[list[RestoreItem], int]:
    """The records a restore of ``document`` changes (removals first), and how many it leaves
    unchanged. Refuses first (:func:`restore_refusals`)."""
    restore_refusals(document)
    covered = set(document["data_types"])
    labels = [rm.label for rm in registry.all_registered() if rm.data_type in covered]
    current = {
        (row.model_label, row.natural_key): row
        for row in ReplicatedRecord.objects.filter(model_label__in=labels, deleted=False)
    }
    wanted: set[tuple[str, str]] = set()
    upserts: list[RestoreItem] = []
    unchanged = 0
    for record in document["records"]:
        if record["deleted"]:
            continue
        rm = registry.get(record["model"])
        ident = (rm.label, record["key"])
        wanted.add(ident)
        data = dict(record["data"])
        placeholders = dict(record.get("placeholders") or {})
        row = current.get(ident)
        before = row.data or {} if row is not None else {}
        names, secrets, values = _differences(rm, record["key"], before, data, placeholders)
        if row is not None and not names:
            unchanged += 1
            continue
        reveals = version_unmasks(model_label=rm.label, natural_key=record["key"], data=data)
        if reveals:  # the history masks these fields: so does the report
            masked = MASKED_WHEN[rm.label][1]
            secrets = [name for name in names if name in secrets or name in masked]
            values = {name: pair for name, pair in values.items() if name not in masked}
        upserts.append(
            RestoreItem(
                action=CHANGED if row is not None else ADDED,
                model=rm.label,
                key=record["key"],
                fields=tuple(names),
                secret_fields=tuple(secrets),
                values={} if row is None else values,
                data=data,
                placeholders=placeholders or None,
                reveals=reveals,
            )
        )
    kept_types = KEPT_ON_PROMOTED_RESTORE if document["promoted"] else ()
    removals = [
        RestoreItem(action=REMOVED, model=label, key=key, deleted=True)
        for (label, key) in sorted(current)
        if (label, key) not in wanted and registry.get(label).data_type not in kept_types
    ]
    return removals + sorted(upserts, key=lambda i: (i.model, i.key)), unchanged


def _write(item: RestoreItem) -> None:
    try:
        with transaction.atomic():  # a savepoint: a constraint error is retried after the rest
            replication_write_version(
                model_label=item.model,
                natural_key=item.key,
                deleted=item.deleted,
                data=item.data,
                force=True,
                plain=item.placeholders,
            )
    except ValueError as exc:
        raise SnapshotError(f"{item.model} {item.key!r}: {exc}") from None


def _check_unmasks(items: list[RestoreItem]) -> None:
    """``RevealRequired`` (naming the record, never a value) when an item would show a value
    the record's history masks (a setting sensitive now or in a kept version, restored to a
    plain version): like a rollback to it, that needs the reveal right."""
    for item in items:
        if item.reveals:
            raise RevealRequired(
                f"{item.model} {item.key!r}: the snapshot holds a plain value of a record that "
                "is, or was since, sensitive here; restoring it shows that value, which needs "
                "the reveal right"
            )


def snapshot_restore(
    *, document: dict[str, Any], dry_run: bool = False, allow_reveal: bool = False
) -> RestoreReport:
    """Restore ``document`` (validated by ``snapshot_load``) on this node, or with ``dry_run``
    only say what would change. Everything is written in one transaction, or nothing.

    Without ``allow_reveal`` (the caller's reveal right), a record the snapshot would make show
    a value its history masks is refused with ``RevealRequired`` (the dry run too: it would
    print that value), nothing written; with it, each such record is audited as a reveal and
    the report still masks those fields.

    A write refused by a uniqueness constraint (another record holds what this one claims, e.g.
    the default provider) is retried after the others. ``SnapshotError`` (naming the record and
    the rule, never a value): nothing written. The dry run applies and rolls back, so it
    refuses exactly what the restore would.
    """
    with transaction.atomic(), acting(via=RESTORE):
        # Planned inside the transaction that applies it (each write then locks its rows).
        items, unchanged = restore_plan(document)
        if not allow_reveal:
            _check_unmasks(items)
        report = RestoreReport(
            dry_run=dry_run,
            items=items,
            unchanged=unchanged,
            source_node=str(document["node_id"]),
            promoted=bool(document["promoted"]),
        )
        _apply(items)
        for item in items:
            if item.reveals:  # like making a sensitive setting plain: a reveal
                audit_reveal_written(model_label=item.model, natural_key=item.key)
        audit_action(
            action=RESTORE_ACTION,
            details={
                "source_node": report.source_node,
                "checksum": str(document["checksum"]),
                "created_at": str(document["created_at"]),
                "promoted": report.promoted,
                "added": report.count(ADDED),
                "changed": report.count(CHANGED),
                "removed": report.count(REMOVED),
            },
        )
        if dry_run:
            # The dry run writes everything and rolls it back: it refuses exactly what the
            # restore would (validation, constraints), and nobody ever sees its writes.
            transaction.set_rollback(True)
    return report


def _apply(items: list[RestoreItem]) -> None:
    pending = list(items)
    while pending:
        refused: list[RestoreItem] = []
        for item in pending:
            try:
                _write(item)
            except IntegrityError:
                refused.append(item)
            except ValidationError as exc:  # the reasons name the rule, never the value
                raise SnapshotError(
                    f"{item.model} {item.key!r}: " + "; ".join(validation_reasons(exc))
                ) from None
        if len(refused) == len(pending):
            item = refused[0]
            raise SnapshotError(
                f"{item.model} {item.key!r}: refused by a uniqueness rule of the database"
            )
        pending = refused
