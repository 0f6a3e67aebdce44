"""Keeping the losers of concurrent changes."""

from __future__ import annotations

from typing import Any

from configsync.models import Conflict


def conflict_create(
    *,
    model_label: str,
    natural_key: str,
    source: str,
    local_version: dict[str, Any],
    remote_version: dict[str, Any],
    winner: str,
) -> Conflict:
    """Record that ``local_version`` and ``remote_version`` of one record were concurrent.

    Versions are ``{"hlc", "origin", "deleted", "data"}`` with ``data`` in wire form (ciphertext for
    encrypted fields, never plaintext). ``winner`` is ``"local"`` or ``"remote"``.
    """
    return Conflict.objects.create(
        model_label=model_label,
        natural_key=natural_key,
        source=source,
        local_version=local_version,
        remote_version=remote_version,
        winner=winner,
    )
