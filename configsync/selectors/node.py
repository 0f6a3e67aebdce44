"""This node's identity, read only: ``CONFIGSYNC_NODE_ID``, else the id stored in the database.

The stored id is generated once and written at start-up — after ``migrate`` of configsync (the
core's ``post_migrate`` receiver) or by the first writer that needs it — by
``configsync.services.node.node_identity_ensure``; reading it never writes.
"""

from __future__ import annotations

from configsync.conf import app_settings
from configsync.models import NodeIdentity

_cached: str | None = None


class NodeIdentityMissing(RuntimeError):
    """No ``CONFIGSYNC_NODE_ID`` and no stored identity: the database was not migrated."""


def node_id() -> str:
    """``CONFIGSYNC_NODE_ID`` when set, else the id stored in the database (cached per process).

    Raises :class:`NodeIdentityMissing` when neither exists (``migrate`` creates the stored one).
    """
    global _cached
    configured = app_settings.NODE_ID
    if configured:
        return str(configured)
    if _cached is None:
        stored = NodeIdentity.objects.order_by("pk").values_list("node_id", flat=True).first()
        if stored is None:
            raise NodeIdentityMissing(
                "this node has no identity yet: run `python manage.py migrate`"
            )
        _cached = stored
    return _cached


def node_id_reset_cache() -> None:
    """Forget the cached id (tests that recreate the database)."""
    global _cached
    _cached = None
