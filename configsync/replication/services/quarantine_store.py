"""Keeping a received item this node could not store (``QuarantinedChange``).

Called by ``changes_apply`` in the applying transaction; retrying and dropping are in
``configsync.replication.services.quarantine``. Keeping is idempotent: the same item received
again (re-delivery, another peer relaying it) is one row (``fingerprint``), its ``attempts``
counted.

The payload holds secrets only as ciphertext tokens (``payload_sealed``): a peer that sends a
secret in plain (a bug, or a hand-made batch) has it masked before anything is stored, so the
plaintext never rests in this table, in its backups or in a snapshot of the database.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import IntegrityError, transaction

from configsync.crypto.keyring import is_token
from configsync.logging import MASK
from configsync.models import QuarantinedChange
from configsync.replication import registry
from configsync.replication.services.wire import escaped


def payload_text(item: Any) -> str:
    """The item as canonical ASCII JSON text (``sort_keys``): equal items give equal texts."""
    try:
        return json.dumps(item, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return json.dumps({"unrepresentable": escaped(item, 200)})


def _data_sealed(label: Any, data: Any) -> Any:
    if not isinstance(data, dict) or not isinstance(label, str):
        return data
    try:
        token_fields = registry.get(label).encrypted_fields
    except LookupError:
        token_fields = ()
    sealed = dict(data)
    for name in token_fields:
        if isinstance(sealed.get(name), str) and sealed[name] and not is_token(sealed[name]):
            sealed[name] = MASK
    if sealed.get("is_sensitive") is True and isinstance(sealed.get("value"), str):
        sealed["value"] = MASK if sealed["value"] else ""
    return sealed


def payload_sealed(item: Any) -> Any:
    """``item`` with every secret it holds in plain masked (``MASK``): the value of a field whose
    wire form is a ciphertext token (the registry's encrypted and sensitive fields) when it is
    not a token, and a plain ``value`` beside ``is_sensitive: true`` (a sensitive setting keeps
    its value only as a token), in its ``data`` and in each of its ``losers``. Such an item is
    refused for that very reason, masked or not, so masking changes no retry's outcome."""
    if not isinstance(item, dict):
        return item
    sealed = dict(item)
    label = item.get("model")
    if "data" in sealed:
        sealed["data"] = _data_sealed(label, sealed["data"])
    if isinstance(sealed.get("losers"), list):
        sealed["losers"] = [
            {**loser, "data": _data_sealed(label, loser.get("data"))}
            if isinstance(loser, dict) and "data" in loser
            else loser
            for loser in sealed["losers"]
        ]
    return sealed


def quarantine_keep(*, item: Any, reason: str, source: str, source_node: str) -> QuarantinedChange:
    """Keep ``item`` (one feed item as received) with ``reason``; return its row.

    Runs in the caller's transaction. The same item kept again updates its row (reason,
    ``attempts`` + 1) and reopens it when it had been applied; a dropped item stays dropped (the
    operator decided). ``reason`` must not hold a value; it is stored escaped. The payload is
    ``payload_sealed``: no secret in plain.
    """
    item = payload_sealed(item)
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
