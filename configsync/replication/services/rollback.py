"""Rolling a replicated record back to one of its kept versions (``RecordVersion``).

A rollback writes the kept version (wire form: ciphertext stays ciphertext, nobody decrypts to
copy it) as a NEW local change through ``replication_write_version(force=True)``: it gets a new
HLC whose version vector dominates every version this node has seen, so it replicates and wins
on every peer, and it is kept in the history as the next version. Its audit event is made
``via="rollback"`` (``configsync.actor``) with ``details={"rolled_back_to": N, "version": M}``.
Rolling back to a delete deletes the record. Rolling back to the current version is not a no-op:
it writes that version again as the next one (a new timestamp: it re-asserts the value on every
peer, e.g. over a concurrent change one of them still holds), audited like any rollback.

Refused with :class:`RollbackError` (nothing written) when the version is not kept, no longer
passes a local write's validation (rules changed since, a related row gone), claims what another
record holds under a uniqueness rule no before-apply hook settles, or holds a secret
this node cannot decrypt (a key this node lacks: writing it would store a value nobody here can
read or verify).

A rollback that would make a value the history masks readable again — a system setting that is
sensitive now or in any kept version, rolled back to a version where it was plain
(``selectors.history.MASKED_WHEN``) —
shows that old value to whoever can read the setting: like making a setting plain, it needs the
reveal right (``allow_reveal=True``) and is refused with ``RevealRequired`` otherwise; when
allowed, it is audited as a reveal too, in the rollback's transaction.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from configsync.actor import ROLLBACK, acting
from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import get_keyring
from configsync.models import ReplicatedRecord
from configsync.replication import registry
from configsync.replication.selectors.history import (
    HistoryError,
    history_model,
    record_version_get,
    version_unmasks,
)
from configsync.replication.services.history import history_details
from configsync.replication.services.local import replication_write_version
from configsync.replication.services.wire import validation_reasons
from configsync.services.audit import RevealRequired, audit_reveal_written


class RollbackError(HistoryError):
    """A rollback cannot be done as asked; nothing was written. Never holds a value."""


def _check_readable(rm: registry.ReplicatedModel, natural_key: str, data: dict[str, Any]) -> None:
    """Every secret of ``data`` opens with this node's keyring, bound to this record."""
    for name in rm.encrypted_field_names():
        token = data.get(name)
        if not token:
            continue
        try:
            get_keyring().decrypt(
                str(token),
                context=encryption_context_for(
                    model_label=rm.label, field_name=name, natural_key=natural_key
                ),
            )
        except Exception:
            raise RollbackError(
                f"the {name} of this version cannot be decrypted on this node (a key it was "
                "encrypted with is not configured here, or the value is damaged)"
            ) from None


def record_rollback(
    *, model_label: str, natural_key: str, number: int, allow_reveal: bool = False
) -> ReplicatedRecord:
    """Write version ``number`` of the record as a new local change that replicates and wins.

    Returns the record's replication row (its new HLC; its history holds the rollback as the
    next version). Raises :class:`RollbackError` when the model does not replicate, the version
    is not kept, it would not pass validation, or its secret cannot be decrypted here, and
    ``RevealRequired`` when it would show a masked value and ``allow_reveal`` is false; nothing is
    written then.
    """
    try:
        rm = history_model(model_label)
        version = record_version_get(model_label=rm.label, natural_key=natural_key, number=number)
    except HistoryError as exc:
        raise RollbackError(str(exc)) from None
    data = version.data if isinstance(version.data, dict) else None
    if not version.deleted:
        if data is None:
            raise RollbackError(f"version {number} of {rm.label} {natural_key!r} holds no data")
        _check_readable(rm, natural_key, data)
    reveals = not version.deleted and version_unmasks(
        model_label=rm.label, natural_key=natural_key, data=data
    )
    if reveals and not allow_reveal:
        raise RevealRequired(
            "this version holds a plain value of a record that is, or was since, sensitive; "
            "rolling back to it shows that value, which needs the reveal right"
        )
    with (
        transaction.atomic(),
        acting(via=ROLLBACK),
        history_details(rolled_back_to=number),
    ):
        try:
            record = replication_write_version(
                model_label=rm.label,
                natural_key=natural_key,
                deleted=version.deleted,
                data=data,
                force=True,
            )
        except ValidationError as exc:
            raise RollbackError(
                f"version {number} of {rm.label} {natural_key!r} no longer passes validation: "
                + "; ".join(validation_reasons(exc))
            ) from None
        except IntegrityError:  # a uniqueness rule no before-apply hook settles
            raise RollbackError(
                f"version {number} of {rm.label} {natural_key!r} claims what another record "
                "holds now (a uniqueness rule of the database); change that record first"
            ) from None
        except ValueError as exc:  # a wire form naming fields the model no longer has
            raise RollbackError(
                f"version {number} of {rm.label} {natural_key!r} cannot be written: {exc}"
            ) from None
        if record is None:  # cannot happen with force=True; kept for the type
            raise RollbackError(f"version {number} of {rm.label} {natural_key!r} was not written")
        if reveals:  # like making a sensitive setting plain: a reveal, audited with the write
            audit_reveal_written(model_label=rm.label, natural_key=natural_key)
    return record
