"""This node's identity."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from configsync.conf import app_settings
from configsync.models import NodeIdentity

_cached: str | None = None


def node_id() -> str:
    """``CONFIGSYNC_NODE_ID`` when set, else an id generated once and stored in the database."""
    global _cached
    configured = app_settings.NODE_ID
    if configured:
        return str(configured)
    if _cached is None:
        row = NodeIdentity.objects.first()
        if row is None:
            try:
                with transaction.atomic():
                    row = NodeIdentity.objects.create(node_id=f"node-{uuid.uuid4().hex[:12]}")
            except IntegrityError:
                row = NodeIdentity.objects.get()
        _cached = row.node_id
    return _cached


def node_id_reset_cache() -> None:
    """Forget the cached id (tests that recreate the database)."""
    global _cached
    _cached = None
