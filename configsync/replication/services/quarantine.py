"""Quarantined replicated changes: keeping, retrying and dropping them (``QuarantinedChange``).

A feed item this node cannot store (it fails validation, names a timestamp beyond the allowed
clock skew, or the database refuses it) is kept here by ``changes_apply`` with its reason, in the
applying transaction, while the rest of its page applies and the cursor moves on: one bad item
never wedges a peer. Keeping is idempotent: the same item received again (re-delivery, another
peer relaying it) is one row (``fingerprint``), its ``attempts`` counted.

Open items are retried automatically on every beat (``quarantine_retry`` from
``configsync.tasks.sync_all_peers``): a timestamp held for clock skew applies once it is within
the bound, an item that failed for a missing key or a missing provider kind once the node is
configured. An operator may retry or drop an item (API, admin, CLI). The stored payload holds
secrets only as the sender's ciphertext tokens and is never shown by the API, admin or CLI.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from configsync.models import QuarantinedChange

logger = logging.getLogger(__name__)

RETRY_BATCH = 100
"""Open items retried per automatic pass (oldest first): a large quarantine costs bounded work."""


def escaped(value: Any, limit: int) -> str:
    """``value`` as ASCII text (NUL, lone surrogates and other non-ASCII as ``\\u`` escapes),
    truncated to ``limit`` characters: storable on every backend, renderable as JSON."""
    text = value if isinstance(value, str) else "" if value is None else repr(value)
    return json.dumps(text, ensure_ascii=True)[1:-1][:limit]


def payload_text(item: Any) -> str:
    """The item as canonical ASCII JSON text (``sort_keys``): equal items give equal texts."""
    try:
        return json.dumps(item, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return json.dumps({"unrepresentable": escaped(item, 200)})


def quarantine_keep(*, item: Any, reason: str, source: str, source_node: str) -> QuarantinedChange:
    """Keep ``item`` (one feed item as received) with ``reason``; return its row.

    Runs in the caller's transaction. The same item kept again updates its row (reason,
    ``attempts`` + 1) and reopens it when it had been applied; a dropped item stays dropped (the
    operator decided). ``reason`` must not hold a value; it is stored escaped.
    """
    payload = payload_text(item)
    fingerprint = hashlib.sha256(payload.encode()).hexdigest()
    fields = item if isinstance(item, dict) else {}
    row = QuarantinedChange.objects.select_for_update().filter(fingerprint=fingerprint).first()
    if row is None:
        try:
            with transaction.atomic():
                return QuarantinedChange.objects.create(
                    source=escaped(source, 255),
                    source_node=escaped(source_node, 64),
                    model_label=escaped(fields.get("model"), 100),
                    natural_key=escaped(fields.get("key"), 255),
                    hlc=escaped(fields.get("hlc"), 120),
                    reason=escaped(reason, 2000),
                    payload=payload,
                    fingerprint=fingerprint,
                )
        except IntegrityError:  # kept concurrently by another process: count this attempt
            row = QuarantinedChange.objects.select_for_update().get(fingerprint=fingerprint)
    row.reason = escaped(reason, 2000)
    row.attempts += 1
    if row.status == QuarantinedChange.Status.APPLIED:
        row.status = QuarantinedChange.Status.OPEN
    row.save(update_fields=["reason", "attempts", "status", "updated_at"])
    return row


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

    Without ``quarantine_id``: the oldest ``RETRY_BATCH`` open items (the beat's automatic
    pass). With it: that item, whatever its status (an operator may retry a dropped one);
    ``QuarantinedChange.DoesNotExist`` when there is none. Each item goes through
    ``changes_apply`` exactly as when it arrived (same source), in its own transaction: applied,
    stale or conflict closes it (status ``applied``); failing again keeps it open with the new
    reason. Never raises for an item that fails again.
    """
    from configsync.replication.services.apply import QUARANTINED, changes_apply

    if quarantine_id is not None:
        rows = [QuarantinedChange.objects.get(pk=quarantine_id)]
    else:
        rows = list(
            QuarantinedChange.objects.filter(status=QuarantinedChange.Status.OPEN).order_by(
                "received_at", "id"
            )[:RETRY_BATCH]
        )
    outcomes: list[RetryOutcome] = []
    for row in rows:
        try:
            item = json.loads(row.payload)
        except ValueError:
            outcomes.append(RetryOutcome(row.pk, QUARANTINED, "payload is not JSON"))
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
    from configsync.replication.hlc import HLC, HLCParseError
    from configsync.replication.services.apply import CLOCK_SKEW

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
