"""The per-peer sync policy: one cycle with one peer under its lock, the same for every caller.

Both the Celery task (``configsync.tasks.sync_peer``) and ``configsync sync`` run a cycle through
``peer_sync``, so they share one lock per peer (``sync_lock_name``), one lock expiry, one rule
for a peer that is busy and one summary line.

**Lock expiry: 600 s** (``SYNC_LOCK_TIMEOUT_SECONDS``; the task used 120 s, the CLI 600 s). The
Redis lock must outlive the longest cycle: a first sync of a large node is many pages, and a
lock that expires mid-cycle lets a second cycle run with the same peer at once. That overlap is
safe (applying is idempotent) but not free: both cycles save checkpoints and record new sessions
in the peer's replication log, so one of them can make the next cycle start a direction over
from the beginning. The Redis lock is a lease the holder renews (``configsync.locks``), so the
600 s bound only applies to a live holder: a worker killed mid-cycle frees the peer within one
lease (``LEASE_SECONDS``), and a file lock is released by the operating system at once.

**Busy peer.** A cycle never waits by default: another worker is already syncing that peer, and
the caller decides what busy means (the task skips: the holder pushes what is pending, see below;
the CLI waits up to ``BUSY_WAIT_SECONDS`` for it, then reports the peer busy).

**Push on commit: a push flag per peer and a single-flight pusher.** A committed local change
raises the flag of each enabled peer (``push_flag_raise``) and, only when it was not raised yet,
enqueues that peer's push (``configsync.tasks.push_on_commit``). Whoever holds the peer's lock
takes the flag (clears it) *before* its cycle reads our feed, and after releasing the lock looks
at the flag again: raised means a change committed that its cycle may not have read, whose own
task may have found the lock busy and left; the holder then takes the lock again and pushes.
So a burst of writes is carried by a few pushes, each taking all that committed before it, and
no write is left behind (the lost wakeup: a write landing after the holder's last read and before
its release finds the lock busy, and the flag it raised is seen after the release). Every cycle
that pushes (full or push-only) takes the flag, so the beat's cycles serve it too.

The flag lives in Redis when ``REDIS_URL`` is set (one key per peer, shared by the node's
processes), else in a file under ``CONFIGSYNC_VAR_DIR/push`` (web, worker and beat of an embedded
node share that folder). A raised flag lapses after ``PUSH_FLAG_SECONDS``: a push whose message
was lost (or whose worker was killed before it took the flag) is asked again by a later write; the
next beat carries it meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from configsync.conf import app_settings
from configsync.locks import named_lock
from configsync.replication.services.cycle import SyncResult, sync_cycle
from configsync.replication.transports.base import Transport

SYNC_LOCK_TIMEOUT_SECONDS = 600
"""Expiry of a Redis per-peer lock, so a killed worker cannot wedge its peer for ever."""
BUSY_WAIT_SECONDS = 60
"""How long ``configsync sync`` (an operator waiting for an answer) waits for a busy peer."""
PUSH_FLAG_SECONDS = 60
"""How long a raised push flag lasts when nobody takes it (see the module docstring)."""


def _flag_key(peer_id: int) -> str:
    return f"push-flag:{peer_id}"


def _flag_file(peer_id: int) -> Path:
    return app_settings.var_dir / "push" / f"peer-{peer_id}.flag"


def _redis() -> bool:
    return bool(getattr(settings, "REDIS_URL", ""))


def push_flag_raise(peer_id: int) -> bool:
    """Raise the push flag of ``peer_id``; ``True`` when this call raised it (it was not
    raised, or had lapsed): the caller then enqueues the push."""
    if _redis():
        return bool(cache.add(_flag_key(peer_id), 1, timeout=PUSH_FLAG_SECONDS))
    path = _flag_file(peer_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        try:
            lapsed = time.time() - path.stat().st_mtime > PUSH_FLAG_SECONDS
        except FileNotFoundError:  # taken meanwhile: raise it again
            return push_flag_raise(peer_id)
        if lapsed:
            os.utime(path)
        return lapsed


def push_flag_take(peer_id: int) -> bool:
    """Clear the push flag of ``peer_id``; whether it was raised (one caller gets ``True``)."""
    if _redis():
        return bool(cache.delete(_flag_key(peer_id)))
    try:
        _flag_file(peer_id).unlink()
    except FileNotFoundError:
        return False
    return True


def push_flag_raised(peer_id: int) -> bool:
    """Whether the push flag of ``peer_id`` is raised (and has not lapsed)."""
    if _redis():
        return bool(cache.has_key(_flag_key(peer_id)))
    with contextlib.suppress(FileNotFoundError):
        return time.time() - _flag_file(peer_id).stat().st_mtime <= PUSH_FLAG_SECONDS
    return False


def sync_lock_name(peer_id: int) -> str:
    """The name of the per-peer lock every cycle with ``peer_id`` holds."""
    return f"sync-peer-{peer_id}"


def peer_sync(
    *,
    peer_id: int,
    pull: bool = True,
    push: bool = True,
    wait_seconds: float = 0,
    enabled_only: bool = False,
    transport: Transport | None = None,
) -> SyncResult | None:
    """Run one cycle with ``peer_id`` under its lock, then push while its push flag is raised;
    the first cycle's result, ``None`` when another cycle held the lock (it pushes what is
    pending).

    ``wait_seconds``: how long to wait for the lock (``0``: not at all). A cycle that pushes
    takes the push flag before it reads our feed; after each release, a raised flag (a change
    whose push found us busy) takes the lock again for a push-only cycle, until it stays clear.
    Each cycle records its own run. Raises whatever ``sync_cycle`` raises (``SyncCycleError``
    when a cycle failed, ``SyncSkipped`` with ``enabled_only``, ``Peer.DoesNotExist``); the lock
    is released either way. ``transport``: passed to every cycle (tests).
    """
    result: SyncResult | None = None
    while True:
        with named_lock(
            sync_lock_name(peer_id),
            blocking=wait_seconds > 0 and result is None,
            wait=wait_seconds,
            timeout=SYNC_LOCK_TIMEOUT_SECONDS,
        ) as held:
            if not held:
                return result
            if push:
                push_flag_take(peer_id)
            ran = sync_cycle(
                peer_id=peer_id,
                pull=pull,
                push=push,
                transport=transport,
                enabled_only=enabled_only,
            )
        result = result or ran
        if not push_flag_raised(peer_id):
            return result
        pull, push = False, True


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
