"""Keeping the losers of concurrent changes."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from configsync.models import Conflict


def conflict_create(
    *,
    model_label: str,
    natural_key: str,
    source: str,
    local_version: dict[str, Any],
    remote_version: dict[str, Any],
    winner: str,
    skew_affected: bool = False,
) -> Conflict:
    """Record that ``local_version`` and ``remote_version`` of one record were concurrent.

    Versions are ``{"hlc", "origin", "deleted", "data"}`` with ``data`` in wire form (ciphertext for
    encrypted fields, never plaintext). ``winner`` is ``"local"`` or ``"remote"``.
    ``skew_affected``: the source's measured clock skew may have decided the winner.
    """
    return Conflict.objects.create(
        model_label=model_label,
        natural_key=natural_key,
        source=source,
        local_version=local_version,
        remote_version=remote_version,
        winner=winner,
        skew_affected=skew_affected,
    )


def conflict_resolve(*, conflict_id: int, choice: str) -> Conflict:
    """Resolve a conflict by writing the chosen version (``local`` or ``remote``) as a new change.

    The chosen version is written through the model with a new timestamp, so it replicates to
    every peer and wins there; a chosen tombstone deletes the record. Values are copied in wire
    form (ciphertext stays ciphertext). The resolving change carries the resolution, so the same
    conflict kept on other nodes is closed there when the change arrives. Raises
    ``ConflictResolveError`` for an unknown id, a bad choice, a conflict already resolved or a
    chosen version that does not pass a local write's validation; nothing changes then.
    """
    from django.db import transaction
    from django.utils import timezone

    from configsync.replication.errors import ConflictResolveError
    from configsync.replication.services.apply import replication_write_version, validation_reasons

    if choice not in (Conflict.Winner.LOCAL, Conflict.Winner.REMOTE):
        raise ConflictResolveError("choice must be 'local' or 'remote'")
    with transaction.atomic():
        conflict = Conflict.objects.select_for_update().filter(pk=conflict_id).first()
        if conflict is None:
            raise ConflictResolveError(f"no conflict with id {conflict_id}")
        if conflict.status == Conflict.Status.RESOLVED:
            raise ConflictResolveError(f"conflict {conflict_id} is already resolved")
        version = conflict.local_version if choice == "local" else conflict.remote_version
        try:
            record = replication_write_version(
                model_label=conflict.model_label,
                natural_key=conflict.natural_key,
                deleted=bool(version.get("deleted")),
                data=version.get("data"),
                force=True,
            )
        except ValidationError as exc:
            raise ConflictResolveError(
                f"the {choice} version of conflict {conflict_id} cannot be stored: "
                + "; ".join(validation_reasons(exc))
            ) from None
        conflict.status = Conflict.Status.RESOLVED
        conflict.resolution = choice
        conflict.resolved_at = timezone.now()
        conflict.resolved_hlc = record.hlc if record is not None else ""
        conflict.save(update_fields=["status", "resolution", "resolved_at", "resolved_hlc"])
    return conflict
