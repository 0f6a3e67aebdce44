"""This node's identity: creating the stored id (once). Reads go through
``configsync.selectors.node.node_id``."""

from __future__ import annotations

import uuid

from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction

from configsync.models import NodeIdentity
from configsync.selectors import node as node_selectors

node_id_reset_cache = node_selectors.node_id_reset_cache


def node_identity_ensure(*, using: str = DEFAULT_DB_ALIAS) -> str:
    """The generated id stored in the database, created once if there is none; returns it.

    Called after ``migrate`` of configsync (so reads never have to write) and by
    :func:`node_id`. ``CONFIGSYNC_NODE_ID``, when set, still wins over the stored id on reads.
    """
    row = NodeIdentity.objects.using(using).order_by("pk").first()
    if row is None:
        try:
            with transaction.atomic(using=using):
                row = NodeIdentity.objects.using(using).create(
                    node_id=f"node-{uuid.uuid4().hex[:12]}"
                )
        except IntegrityError:
            row = NodeIdentity.objects.using(using).get()
    return row.node_id


def node_id() -> str:
    """This node's id for writers: ``selectors.node.node_id``, creating the stored id if missing
    (a database whose ``post_migrate`` did not run, e.g. a table emptied by hand)."""
    try:
        return node_selectors.node_id()
    except node_selectors.NodeIdentityMissing:
        node_identity_ensure()
        return node_selectors.node_id()
