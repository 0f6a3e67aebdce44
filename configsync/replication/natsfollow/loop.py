"""The follower process (``configsync nats follow``, the Procfile's ``nats`` line).

``NatsFollower.run`` until ``stop`` is set (SIGTERM/SIGINT in the command):

* **Not configured** (``CONFIGSYNC_NATS_URL`` unset): it logs one line and waits for ``stop``:
  no query, no request, no timer (``make run`` starts it on every node).
* **Not followed** (the peer is disabled, or the mode is ``LOCAL_ONLY``): one query every
  ``recheck_seconds`` to notice a mode switched at run time.
* **Following**: a plain subscription on the group's subjects (``NatsTransport.watch``) raises a
  wake-up flag for every message published there (this node's own too, so its consumer reads
  past them and its lag returns to zero); the follower then runs one pull cycle
  (``service.nats_follow_once``: durable consumer, same apply path, acknowledged after commit)
  and messages arriving meanwhile raise the flag again, so a burst is carried by few cycles.
  An idle period costs no request at all: the loop only looks at the flag and at its
  connection, locally. At start, after every (re)subscription and after a failure it pulls
  anyway, so what was published while it was away or disconnected is read from its durable
  cursor. A failed cycle (or the server or the database away) is retried after a back-off (1 s
  doubling to ``MAX_BACKOFF_SECONDS``); the process stays up whatever fails.
* **Snapshots**: after a successful cycle, when this node's last snapshot is older than
  ``snapshot_seconds`` (default: a quarter of ``CONFIGSYNC_NATS_MAX_AGE_SECONDS``, between one
  minute and one hour; one hour without an age limit), it stores a new one
  (``service.nats_snapshot_write``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.db import close_old_connections

from configsync.conf import app_settings
from configsync.replication.errors import TransportError
from configsync.replication.natsfollow.service import (
    nats_follow_once,
    nats_peer,
    nats_snapshot_write,
    nats_transport,
)
from configsync.replication.transports.nats import NatsTransport

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0
RECHECK_SECONDS = 30.0
POLL_SECONDS = 1.0
"""How often the loop looks at its flag, its connection and ``stop`` (locally: no request)."""


def snapshot_interval() -> float:
    """Seconds between this node's snapshots (see the module docstring)."""
    max_age = float(app_settings.NATS_MAX_AGE_SECONDS or 0)
    if not max_age:
        return 3600.0
    return min(max(max_age / 4, 60.0), 3600.0)


@dataclass
class FollowerStats:
    """What the follower did since it started (for its log line and the tests)."""

    cycles: int = 0
    pulled: int = 0
    failures: int = 0
    snapshots: int = 0
    subscriptions: int = 0


class NatsFollower:
    """See the module docstring. ``stop``: set it to end :meth:`run` (within ``POLL_SECONDS``
    when following)."""

    def __init__(
        self,
        *,
        stop: threading.Event | None = None,
        recheck_seconds: float = RECHECK_SECONDS,
        snapshot_seconds: float | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.recheck_seconds = recheck_seconds
        self.snapshot_seconds = (
            snapshot_interval() if snapshot_seconds is None else snapshot_seconds
        )
        self.stats = FollowerStats()
        self.wake = threading.Event()
        self._transport: NatsTransport | None = None
        self._watch: object | None = None
        self._snapshot_at: float | None = None

    def run(self) -> None:
        if not app_settings.nats_configured:
            logger.info("nats follower: CONFIGSYNC_NATS_URL is not set: idle")
            self.stop.wait()
            return
        logger.info("nats follower: started")
        from configsync.replication.services.peers import peer_seed_from_settings

        seeded = False
        backoff = 0.0
        try:
            while not self.stop.is_set():
                try:
                    if not seeded:  # the beat seeds it too: the follower may start first
                        peer_seed_from_settings()  # (before ``migrate``: fails, and is retried)
                        seeded = True
                    if self.wake.is_set() or self._transport is None:
                        close_old_connections()  # a long-lived process: as Django per request
                    if nats_peer() is None:
                        self._unsubscribe()
                        self.stop.wait(self.recheck_seconds)
                        continue
                    self._step()
                    backoff = 0.0
                except Exception as exc:
                    # A failed cycle (recorded as a run), the server or the database away, or a
                    # bug: the process stays up (it shares ``make run``'s supervisor with web,
                    # worker and beat) and tries again after a back-off.
                    self.stats.failures += 1
                    backoff = min(max(backoff * 2, 1.0), MAX_BACKOFF_SECONDS)
                    if isinstance(exc, TransportError):
                        logger.warning("nats follower: %s (again in %.0f s)", exc, backoff)
                    else:
                        logger.exception("nats follower: %s (again in %.0f s)", exc, backoff)
                    self._unsubscribe()
                    self.stop.wait(backoff)
                    self.wake.set()
                    continue
                self.wake.wait(POLL_SECONDS)
        finally:
            self._unsubscribe()
            logger.info(
                "nats follower: stopped after %s cycles (%s changes pulled)",
                self.stats.cycles,
                self.stats.pulled,
            )

    def _step(self) -> None:
        """Subscribe when needed, then run a cycle if woken, then a snapshot if due."""
        if self._transport is None:
            self._transport = nats_transport()
        if self._watch is None or not self._transport.watching(self._watch):
            self._watch = self._transport.watch(self.wake.set)
            self.stats.subscriptions += 1
            self.wake.set()  # read what was published while not subscribed
        if not self.wake.is_set():
            return
        self.wake.clear()
        result = nats_follow_once(transport=self._transport)
        if result is None:  # another process held the peer, or it is no longer followed
            self.wake.set()
            return
        self.stats.cycles += 1
        self.stats.pulled += result.pulled
        now = time.monotonic()
        if self._snapshot_at is None or now - self._snapshot_at >= self.snapshot_seconds:
            self._snapshot_at = now
            try:
                nats_snapshot_write(transport=self._transport)
                self.stats.snapshots += 1
            except TransportError as exc:  # the next one is due after the interval
                logger.warning("nats follower: no snapshot stored: %s", exc)

    def _unsubscribe(self) -> None:
        if self._transport is not None:
            if self._watch is not None:
                self._transport.unwatch(self._watch)
            self._transport.close()
        self._transport, self._watch = None, None
