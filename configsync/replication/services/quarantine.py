"""Quarantined replicated changes: keeping, retrying and dropping them (``QuarantinedChange``).

A feed item this node cannot store (it fails validation, names a timestamp beyond the allowed
clock skew, or the database refuses it) is kept here by ``changes_apply`` with its reason, in the
applying transaction, while the rest of its page applies and the cursor moves on: one bad item
never wedges a peer. Keeping is idempotent: the same item received again (re-delivery, another
peer relaying it) is one row (``fingerprint``), its ``attempts`` counted
(``configsync.replication.services.quarantine_store``).

Open items are retried automatically on every beat (``quarantine_retry`` from
``configsync.tasks.sync_all_peers``): a timestamp held for clock skew applies once it is within
the bound, an item that failed for a missing key or a missing provider kind once the node is
configured. An operator may retry or drop an item (API, admin, CLI). The stored payload holds
secrets only as the sender's ciphertext tokens and is never shown by the API, admin or CLI.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from configsync.models import QuarantinedChange
from configsync.replication.hlc import HLC, HLCParseError
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.wire import CLOCK_SKEW, QUARANTINED

logger = logging.getLogger(__name__)

RETRY_BATCH = 100
"""Open items retried per automatic pass (least recently tried first, so items that keep failing
take turns with the rest instead of starving them): a large quarantine costs bounded work."""


@dataclass(frozen=True)
class RetryOutcome:
    """What retrying one quarantined item did: ``status`` is the apply result (``applied``,
    ``stale``, ``conflict``: no longer quarantined) or ``quarantined`` with ``reason``."""

    id: int
    status: str
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "reason": self.reason}


def quarantine_retry(*, quarantine_id: int | None = None) -> list[RetryOutcome]:
    """Try quarantined items again; return one outcome per item tried.

    Without ``quarantine_id``: the ``RETRY_BATCH`` open items least recently tried (the beat's
    automatic pass; a failed retry counts as a try, so every open item gets its turn). With
    it: that item, whatever its status (an operator may retry a dropped one);
    ``QuarantinedChange.DoesNotExist`` when there is none. Each item goes through
    ``changes_apply`` exactly as when it arrived (same source), in its own transaction: applied,
    stale or conflict closes it (status ``applied``); failing again keeps it open with the new
    reason. Never raises for an item that fails again.
    """
    if quarantine_id is not None:
        rows = [QuarantinedChange.objects.get(pk=quarantine_id)]
    else:
        rows = list(
            QuarantinedChange.objects.filter(status=QuarantinedChange.Status.OPEN).order_by(
                "updated_at", "id"
            )[:RETRY_BATCH]
        )
    outcomes: list[RetryOutcome] = []
    for row in rows:
        try:
            item = json.loads(row.payload)
        except (ValueError, RecursionError):
            outcomes.append(RetryOutcome(row.pk, QUARANTINED, "payload is not JSON"))
            # A try like any other: it takes its turn behind the rest next time.
            QuarantinedChange.objects.filter(pk=row.pk).update(updated_at=timezone.now())
            continue
        with transaction.atomic():
            if row.status == QuarantinedChange.Status.DROPPED:
                QuarantinedChange.objects.filter(pk=row.pk).update(
                    status=QuarantinedChange.Status.OPEN
                )
            results = changes_apply(
                changes=[item],
                source_node=row.source_node,
                source_name=row.source,
                source_skew_ms=_held_lead_ms(row, item),
            )
            result = results[0]
            if result.status == QUARANTINED:
                outcomes.append(RetryOutcome(row.pk, QUARANTINED, result.reason))
                continue
            QuarantinedChange.objects.filter(pk=row.pk).update(
                status=QuarantinedChange.Status.APPLIED
            )
        outcomes.append(RetryOutcome(row.pk, result.status))
    applied = sum(1 for o in outcomes if o.status != QUARANTINED)
    if applied:
        logger.info("quarantine: %d of %d retried changes applied", applied, len(outcomes))
    return outcomes


def _held_lead_ms(row: QuarantinedChange, item: Any) -> int | None:
    """How far ahead of this node's clock an item held for clock skew was when it arrived.

    Passed as the source's skew when the held item finally applies, so a conflict it then wins
    or loses is marked ``skew_affected`` (its lead, not today's smaller one, is what may have
    decided it). ``None`` for items quarantined for another reason.
    """
    if not row.reason.startswith(CLOCK_SKEW) or not isinstance(item, dict):
        return None
    try:
        wall_ms = HLC.parse(item.get("hlc")).wall_ms
    except HLCParseError:
        return None
    return wall_ms - int(row.received_at.timestamp() * 1000)


def quarantine_drop(*, quarantine_id: int) -> QuarantinedChange:
    """Drop a quarantined item: it is kept for the record but no longer retried.

    ``QuarantinedChange.DoesNotExist`` when there is none.
    """
    with transaction.atomic():
        row = QuarantinedChange.objects.select_for_update().get(pk=quarantine_id)
        row.status = QuarantinedChange.Status.DROPPED
        row.save(update_fields=["status", "updated_at"])
    return row
