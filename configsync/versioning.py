"""Optimistic concurrency: a version token of a record, used as the HTTP ETag and by the admin."""

from __future__ import annotations

import hashlib

from django.db import models


def record_etag(instance: models.Model) -> str:
    """An opaque token that changes whenever the stored record changes (quoted, as an ETag)."""
    updated_at = getattr(instance, "updated_at", None)
    stamp = updated_at.isoformat() if updated_at else ""
    natural_key = getattr(instance, type(instance).natural_key_field, instance.pk)  # type: ignore[attr-defined]
    digest = hashlib.sha256(f"{instance._meta.label_lower}|{natural_key}|{stamp}".encode())
    return f'"{digest.hexdigest()[:20]}"'
