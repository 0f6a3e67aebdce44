"""The per-peer sync policy: one cycle with one peer under its lock, the same for every caller.

Both the Celery task (``configsync.tasks.sync_peer``) and ``configsync sync`` run a cycle through
``peer_sync``, so they share one lock per peer (``sync_lock_name``), one lock expiry, one rule
for a peer that is busy and one summary line.

**Lock expiry: 600 s** (``SYNC_LOCK_TIMEOUT_SECONDS``; the task used 120 s, the CLI 600 s). The
Redis lock must outlive the longest cycle: a first sync of a large node is many pages, and a
lock that expires mid-cycle lets a second cycle run with the same peer at once. That overlap is
safe (applying is idempotent) but not free: both cycles save checkpoints and record new sessions
in the peer's replication log, so one of them can make the next cycle start a direction over
from the beginning. The cost of the longer expiry is bounded and only follows a killed worker on
Redis (a file lock is released by the operating system when its holder dies): that peer then
waits up to ten minutes for its next cycle, and loses nothing (its changes wait in the feeds).

**Busy peer.** A cycle never waits by default: another worker is already syncing that peer, and
the caller decides what busy means (the task skips a full cycle and retries a push-only one a
second later; the CLI waits up to ``BUSY_WAIT_SECONDS`` for it, then reports the peer busy).
"""

from __future__ import annotations

from configsync.locks import named_lock
from configsync.replication.services.cycle import SyncResult, sync_cycle

SYNC_LOCK_TIMEOUT_SECONDS = 600
"""Expiry of a Redis per-peer lock, so a killed worker cannot wedge its peer for ever."""
BUSY_WAIT_SECONDS = 60
"""How long ``configsync sync`` (an operator waiting for an answer) waits for a busy peer."""
PUSH_BUSY_RETRY_SECONDS = 1
"""A push-only cycle that found its peer busy is tried again this much later: the running cycle
may have read our feed before the change that enqueued the push."""


def sync_lock_name(peer_id: int) -> str:
    """The name of the per-peer lock every cycle with ``peer_id`` holds."""
    return f"sync-peer-{peer_id}"


def peer_sync(
    *, peer_id: int, pull: bool = True, push: bool = True, wait_seconds: float = 0
) -> SyncResult | None:
    """Run one cycle with ``peer_id`` under its lock; ``None`` when another cycle holds it.

    ``wait_seconds``: how long to wait for the lock (``0``: not at all). Raises whatever
    ``sync_cycle`` raises (``SyncCycleError`` when the cycle failed, ``Peer.DoesNotExist``); the
    lock is released either way.
    """
    with named_lock(
        sync_lock_name(peer_id),
        blocking=wait_seconds > 0,
        wait=wait_seconds,
        timeout=SYNC_LOCK_TIMEOUT_SECONDS,
    ) as held:
        if not held:
            return None
        return sync_cycle(peer_id=peer_id, pull=pull, push=push)


def sync_summary(result: SyncResult) -> str:
    """What a cycle did in one line (counts only, never a value)."""
    text = (
        f"pulled {result.pulled}, pushed {result.pushed}, "
        f"conflicts {result.conflicts}, stale {result.stale}"
    )
    if result.unreadable:
        text += f", unreadable {result.unreadable}"
    if result.quarantined:
        text += f", quarantined {result.quarantined}"
    if result.held_for_skew:
        text += f" ({result.held_for_skew} held by the peer for clock skew)"
    if result.restarted:
        text += f"; started over after a restore: {', '.join(result.restarted)}"
    return text
