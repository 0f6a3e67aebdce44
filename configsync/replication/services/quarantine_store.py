"""Keeping a received item this node could not store (``QuarantinedChange``).

Called by ``changes_apply`` in the applying transaction; retrying and dropping are in
``configsync.replication.services.quarantine``. Keeping is idempotent: the same item received
again (re-delivery, another peer relaying it) is one row (``fingerprint``), its ``attempts``
counted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import IntegrityError, transaction

from configsync.models import QuarantinedChange
from configsync.replication.services.wire import escaped


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
