"""The replication log: this node's record of each peer's checkpoints, for restore detection.

A peer records here, after each cycle whose cursor moved, the random ``session`` of each
direction's checkpoint (``POST /api/v1/sync/log``); ``configsync.replication.services.cycle``
documents the protocol and its crash points.
"""

from __future__ import annotations

import re

from django.db import transaction

from configsync.exceptions import ConfigsyncError
from configsync.models import PeerCheckpoint, ReplicationLog


class ReplicationLogError(ConfigsyncError):
    """A peer asked to record a checkpoint this node refuses (bad direction, session, cursor)."""


_SESSION = re.compile(r"^[0-9a-f]{8,32}\Z")
_CURSOR_TEXT = re.compile(r"^[\x21-\x7e]{0,100}\Z")


def replication_log_check(*, node: str, direction: str, session: str, cursor: str) -> None:
    """``ReplicationLogError`` when peer ``node``'s checkpoint is not one this node records: the
    direction is unknown, the session is not 8 to 32 lowercase hex digits, or the cursor is not at
    most 100 printable ASCII characters."""
    if not node:
        raise ReplicationLogError("the caller has no node id")
    if direction not in PeerCheckpoint.Direction.values:
        raise ReplicationLogError("direction must be pull or push")
    if not _SESSION.match(session):
        raise ReplicationLogError("session must be 8 to 32 lowercase hex digits")
    if not _CURSOR_TEXT.match(cursor):
        raise ReplicationLogError("cursor must be at most 100 printable ASCII characters")


def replication_log_record(
    *, node: str, direction: str, session: str, cursor: str
) -> ReplicationLog:
    """Record peer ``node``'s checkpoint of ``direction`` (as it sees it), replacing the last.

    ``ReplicationLogError`` (``replication_log_check``) for a checkpoint this node does not
    record; nothing changes then.
    """
    replication_log_check(node=node, direction=direction, session=session, cursor=cursor)
    with transaction.atomic():
        row, _ = ReplicationLog.objects.select_for_update().update_or_create(
            node_id=node, direction=direction, defaults={"session": session, "cursor": cursor}
        )
    return row


def replication_log_replace(
    *, node: str, direction: str, session: str, cursor: str, replaces: str
) -> bool:
    """:func:`replication_log_record` only if the entry now holds the session ``replaces``
    (``""``: no entry); whether it did. When it does not, nothing changes: the caller's record
    and ours disagree, and its cycle starts that direction over."""
    replication_log_check(node=node, direction=direction, session=session, cursor=cursor)
    with transaction.atomic():
        held = (
            ReplicationLog.objects.select_for_update()
            .filter(node_id=node, direction=direction)
            .values_list("session", flat=True)
            .first()
        )
        if (held or "") != replaces:
            return False
        ReplicationLog.objects.update_or_create(
            node_id=node, direction=direction, defaults={"session": session, "cursor": cursor}
        )
    return True
