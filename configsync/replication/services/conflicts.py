"""Conflict bookkeeping: keeping the losers of concurrent changes, closing and resolving them.

Versions are kept in wire form (ciphertext for secrets): this module never decrypts. A conflict
is identified by its two versions' timestamps, so the same conflict reaching a node along several
paths (a peer relaying a loser it kept, a resolution arriving from another node) is one row.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from configsync.actor import RESOLVE, acting
from configsync.conf import app_settings
from configsync.models import Conflict
from configsync.replication.errors import ConflictResolveError
from configsync.replication.selectors.history import version_unmasks
from configsync.replication.services.local import replication_write_version
from configsync.replication.services.wire import Version, validation_reasons
from configsync.services.audit import RevealRequired, audit_reveal_written


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


def conflict_resolve(*, conflict_id: int, choice: str, allow_reveal: bool = False) -> Conflict:
    """Resolve a conflict by writing the chosen version (``local`` or ``remote``) as a new change.

    The chosen version is written through the model with a new timestamp, so it replicates to
    every peer and wins there; a chosen tombstone deletes the record. Values are copied in wire
    form (ciphertext stays ciphertext). The resolving change carries the resolution, so the same
    conflict kept on other nodes is closed there when the change arrives. Raises
    ``ConflictResolveError`` for an unknown id, a bad choice, a conflict already resolved or a
    chosen version that does not pass a local write's validation; nothing changes then.

    A chosen version holding a plain value of a record that is, or was since, sensitive (the
    history masks it: ``selectors.history.version_unmasks``) would show that value: it needs the
    reveal right (``allow_reveal``; ``RevealRequired`` otherwise, nothing written) and is audited
    as a reveal with the write, as a rollback is.
    """
    if choice not in (Conflict.Winner.LOCAL, Conflict.Winner.REMOTE):
        raise ConflictResolveError("choice must be 'local' or 'remote'")
    with transaction.atomic(), acting(via=RESOLVE):
        conflict = Conflict.objects.select_for_update().filter(pk=conflict_id).first()
        if conflict is None:
            raise ConflictResolveError(f"no conflict with id {conflict_id}")
        if conflict.status == Conflict.Status.RESOLVED:
            raise ConflictResolveError(f"conflict {conflict_id} is already resolved")
        version = conflict.local_version if choice == "local" else conflict.remote_version
        data = version.get("data")
        reveals = not version.get("deleted") and version_unmasks(
            model_label=conflict.model_label,
            natural_key=conflict.natural_key,
            data=data if isinstance(data, dict) else None,
        )
        if reveals and not allow_reveal:
            raise RevealRequired(
                f"the {choice} version of conflict {conflict_id} holds a plain value of a record "
                "that is, or was since, sensitive; choosing it shows that value, which needs "
                "the reveal right"
            )
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
        if reveals:
            audit_reveal_written(model_label=conflict.model_label, natural_key=conflict.natural_key)
        conflict.status = Conflict.Status.RESOLVED
        conflict.resolution = choice
        conflict.resolved_at = timezone.now()
        conflict.resolved_hlc = record.hlc if record is not None else ""
        conflict.save(update_fields=["status", "resolution", "resolved_at", "resolved_hlc"])
    return conflict


def _conflict_exists(label: str, key: str, hlcs: set[str]) -> bool:
    for local_version, remote_version in Conflict.objects.filter(
        model_label=label, natural_key=key
    ).values_list("local_version", "remote_version"):
        if {local_version.get("hlc"), remote_version.get("hlc")} == hlcs:
            return True
    return False


def conflict_skew_affected(*, local: Version, remote: Version, source_skew_ms: int | None) -> bool:
    """Whether the source's clock skew may have decided between ``local`` and ``remote``: it
    exceeds ``SKEW_WARNING_SECONDS`` and the versions' wall times are closer than it."""
    if source_skew_ms is None:
        return False
    skew = abs(source_skew_ms)
    if skew <= app_settings.SKEW_WARNING_SECONDS * 1000:
        return False
    return abs(local.hlc.wall_ms - remote.hlc.wall_ms) <= skew


def conflict_keep(
    *,
    label: str,
    key: str,
    source: str,
    local: Version,
    remote: Version,
    winner: str,
    skew_affected: bool = False,
) -> None:
    """Keep the conflict between ``local`` and ``remote`` unless one between them is kept."""
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


def conflict_close(*, label: str, key: str, versions: frozenset[str], chosen: str, by: str) -> None:
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


def conflict_keep_loser(
    *, label: str, key: str, source: str, before: Version | None, winner: Version, loser: Version
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
        conflict_keep(
            label=label, key=key, source=source, local=loser, remote=winner, winner="remote"
        )
    else:
        conflict_keep(
            label=label, key=key, source=source, local=winner, remote=loser, winner="local"
        )
