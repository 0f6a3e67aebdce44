"""This node's clock: the single ``NodeClock`` row, locked for every change of the feed.

Every change of a replicated record, local or received, takes the row ``select_for_update`` to
get its feed sequence number (and, for a local write, a new HLC timestamp). The row lock is held
until commit, so sequence numbers become visible in commit order and the change feed never
skips a change (see docs/architecture.md, "Replication").
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, connection, transaction

from configsync.models import NodeClock
from configsync.replication.hlc import HLC, HLCParseError, physical_now_ms, receive, tick
from configsync.services.node import node_id


def clock_locked() -> NodeClock:
    """The ``NodeClock`` row, locked until the current transaction ends (created on demand)."""
    if not connection.in_atomic_block:
        raise RuntimeError("clock_locked() must run inside a transaction")
    clock = NodeClock.objects.select_for_update().filter(pk=NodeClock.ROW_ID).first()
    if clock is None:
        try:
            with transaction.atomic():
                NodeClock.objects.create(pk=NodeClock.ROW_ID, epoch=uuid.uuid4().hex[:16])
        except IntegrityError:
            pass
        clock = NodeClock.objects.select_for_update().get(pk=NodeClock.ROW_ID)
    if not clock.epoch:
        clock.epoch = uuid.uuid4().hex[:16]
    return clock


def clock_issue(*, after: list[str] | None = None) -> tuple[HLC, int]:
    """Issue a local write's new timestamp and its feed sequence number, in one clock update.

    ``after``: timestamps the new one must follow (the record's version and its vector's
    entries; unparsable ones are ignored). The clock has normally seen them already; not
    after a restore from a backup taken while it ran ahead, and a new version that sorted before
    its predecessor would be answered ``stale`` by every peer holding that one.

    Call inside a transaction: the clock row stays locked until it ends, which is what makes
    sequence numbers become visible in commit order (see the module docstring).
    """
    clock = clock_locked()
    now = physical_now_ms()
    wall, logical = tick(clock.last_wall_ms, clock.last_logical, now_ms=now)
    for text in after or []:
        try:
            seen = HLC.parse(text)
        except HLCParseError:
            continue
        if seen.instant >= (wall, logical):
            wall, logical = receive(wall, logical, seen, now_ms=now)
    clock.last_wall_ms, clock.last_logical = wall, logical
    clock.last_seq += 1
    clock.save()
    return HLC(wall, logical, node_id()), clock.last_seq
