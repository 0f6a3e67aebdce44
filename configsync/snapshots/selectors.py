"""Reads of the snapshot subsystem: this node's snapshot document (never writes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from configsync.conf import app_settings
from configsync.crypto.keyring import is_token, token_key_id
from configsync.models import ReplicatedRecord
from configsync.replication import registry
from configsync.selectors.node import node_id
from configsync.snapshots.document import FORMAT, document_seal


def record_entry(record: ReplicatedRecord) -> dict[str, Any]:
    """One replication row as a snapshot record (wire form: secrets stay ciphertext)."""
    return {
        "model": record.model_label,
        "key": record.natural_key,
        "hlc": record.hlc,
        "origin": record.origin_node,
        "version_vector": dict(record.version_vector or {}),
        "deleted": bool(record.deleted),
        "data": None if record.deleted else record.data,
    }


def token_key_ids(records: Iterable[dict[str, Any]]) -> set[str]:
    """Every key id a token in ``records`` (encrypted and sensitive wire fields) was made under.
    A record of a model this node does not replicate is skipped (restore refuses it anyway)."""
    found: set[str] = set()
    for record in records:
        data = record.get("data")
        if not isinstance(data, dict):
            continue
        try:
            rm = registry.get(str(record.get("model")))
        except LookupError:
            continue
        for name in rm.encrypted_field_names():
            token = data.get(name)
            if isinstance(token, str) and is_token(token):
                found.add(token_key_id(token))
    return found


def snapshot_document(*, data_types: Iterable[str] | None = None) -> dict[str, Any]:
    """A sealed snapshot of every replicated record of this node (or of ``data_types``),
    tombstones included, with the node and group identity and the key ids its tokens use.

    One query reads the rows, so the snapshot is one consistent state of the feed.
    """
    wanted = set(registry.data_types()) if data_types is None else set(data_types)
    labels = sorted(rm.label for rm in registry.all_registered() if rm.data_type in wanted)
    records = [
        record_entry(record)
        for record in ReplicatedRecord.objects.filter(model_label__in=labels).order_by(
            "model_label", "natural_key"
        )
    ]
    return document_seal(
        {
            "format": FORMAT,
            "node_id": node_id(),
            "group_id": str(app_settings.GROUP_ID),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "key_ids": sorted(token_key_ids(records)),
            "promoted": False,
            "data_types": sorted(wanted),
            "records": records,
        }
    )
