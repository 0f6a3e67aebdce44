"""What the NATS follower does once, and what ``status`` shows of it.

**Follow.** :func:`nats_follow_once` is one pull cycle with the ``nats`` peer through the per-peer
policy (``services.sync.peer_sync``: the same lock, run record and apply path as the beat's
cycles and ``configsync sync``): pages come from this node's durable consumer, each is applied
with its checkpoint in one transaction, and the messages are acknowledged only by the next
request after that commit (``transports.nats``). Because the follower and the beat's cycles share
the per-peer lock and read the committed checkpoint under it, neither re-reads what the other
applied from a cursor it kept in memory; a message delivered again is at or below the committed
cursor and only acknowledged, or arrives as ``stale`` (version vectors): nothing applies twice.

**Snapshots.** :func:`nats_snapshot_write` stores this node's whole state (its feed from the
start, echoes included, in wire form: ciphertext only) with the stream sequence its pull
checkpoint covers, in the object store ``configsync_<group>_snap`` (one object per node, replaced
each time). A node whose cursor is below what the stream still holds reads the newest snapshot
through the same pull (``transports.nats``), then the stream from the sequence it covers. A
snapshot holds what its node holds: types its strategy matrix keeps from pulling and changes it
quarantined are not in it, though its cursor moved past them.

**Lag.** :func:`nats_status` asks the server now (one round trip, short timeout) for this node's
consumer against the stream; it answers ``reachable=False`` with the reason rather than raising,
so ``status`` shows a stream that is down.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from configsync.conf import app_settings
from configsync.models import Peer, PeerCheckpoint
from configsync.replication.errors import TransportError
from configsync.replication.selectors.feed import feed_page
from configsync.replication.selectors.mode import mode_transports
from configsync.replication.services.cycle import SyncResult, SyncSkipped
from configsync.replication.services.peers import NATS_PEER
from configsync.replication.services.sync import peer_sync
from configsync.replication.transports.nats import (
    ConsumerLag,
    NatsTransport,
    snapshot_bucket,
)
from configsync.services.node import node_id

logger = logging.getLogger(__name__)

FOLLOW_LOCK_WAIT_SECONDS = 10.0
"""How long the follower waits for a cycle another process runs with the ``nats`` peer (then
it tries again: short, so a stop request is served soon)."""
STATUS_TIMEOUT_SECONDS = 2.0
"""How long ``status`` (and a ``/metrics`` scrape) waits for the server's answer."""
SNAPSHOT_PAGE = 1000


class NatsNotFollowed(TransportError):
    """NATS is not configured, or this node's mode does not use it (nothing to follow)."""


def nats_peer() -> Peer | None:
    """The ``nats`` peer when ``CONFIGSYNC_NATS_URL`` is set, the peer is enabled and this
    node's deployment mode uses it; ``None`` otherwise."""
    if not app_settings.nats_configured:
        return None
    peer = Peer.objects.filter(
        name=NATS_PEER, transport=Peer.TransportKind.NATS, enabled=True
    ).first()
    if peer is None or Peer.TransportKind.NATS not in mode_transports():
        return None
    return peer


def nats_transport(*, timeout: float | None = None) -> NatsTransport:
    """A transport to this node's group stream (the process's pooled connection)."""
    return NatsTransport(name=NATS_PEER, node=node_id(), timeout=timeout)


def nats_follow_once(
    *, transport: NatsTransport | None = None, wait_seconds: float = FOLLOW_LOCK_WAIT_SECONDS
) -> SyncResult | None:
    """One pull cycle with the ``nats`` peer (see the module docstring); its result, ``None``
    when nothing is followed (not configured, disabled, not in this node's mode) or another
    process held the peer for longer than ``wait_seconds``. Raises ``SyncCycleError`` when the
    cycle failed (recorded as a run, as every cycle)."""
    peer = nats_peer()
    if peer is None:
        return None
    try:
        return peer_sync(
            peer_id=peer.pk,
            pull=True,
            push=False,
            wait_seconds=wait_seconds,
            enabled_only=True,
            transport=transport,
        )
    except SyncSkipped:
        return None


@dataclass(frozen=True)
class SnapshotWritten:
    """What :func:`nats_snapshot_write` stored: how many items, covering which sequence."""

    bucket: str
    items: int
    covers: int
    size_bytes: int


def nats_snapshot_write(*, transport: NatsTransport | None = None) -> SnapshotWritten:
    """Store this node's snapshot (see the module docstring). ``NatsNotFollowed`` when NATS is
    not configured; ``TransportError`` when this node is itself catching up from a snapshot (its
    cursor is inside one) or the server fails."""
    if not app_settings.nats_configured:
        raise NatsNotFollowed("the NATS transport is not configured: set CONFIGSYNC_NATS_URL")
    cursor = (
        PeerCheckpoint.objects.filter(peer__name=NATS_PEER, direction=PeerCheckpoint.Direction.PULL)
        .values_list("cursor", flat=True)
        .first()
        or ""
    )
    if cursor and not cursor.isdigit():
        raise TransportError("this node is catching up from a snapshot: no snapshot of its own")
    covers = int(cursor or 0)  # read before the feed: the feed holds at least what it covers
    me = node_id()
    changes: list[dict[str, Any]] = []
    position: str | None = None
    while True:
        page = feed_page(node=me, cursor=position, limit=SNAPSHOT_PAGE)
        changes.extend(page.changes)
        position = page.next_cursor
        if not page.has_more:
            break
    link = transport or nats_transport()
    try:
        size = link.snapshot_write(covers=covers, changes=changes)
    finally:
        if transport is None:
            link.close()
    logger.info("nats snapshot stored: %s items covering sequence %s", len(changes), covers)
    return SnapshotWritten(
        bucket=snapshot_bucket(link.group), items=len(changes), covers=covers, size_bytes=size
    )


@dataclass(frozen=True)
class NatsStatus:
    """The NATS transport as ``status``, the API, the admin and ``/metrics`` show it.

    ``configured``: ``CONFIGSYNC_NATS_URL`` is set; ``followed``: this node's mode uses it and the
    peer is enabled; ``reachable``: the server answered now (else ``error`` says why, never a
    credential); ``lag`` and the rest as the server reports them (see ``ConsumerLag``);
    ``snapshot_*``: the newest snapshot in the group's object store (``None``: none, or not read).
    """

    configured: bool
    followed: bool
    server: str
    stream: str
    consumer: str
    reachable: bool
    error: str
    lag: int | None
    pending: int | None
    ack_pending: int | None
    stream_first_seq: int | None
    stream_last_seq: int | None
    ack_floor_seq: int | None
    max_age_seconds: float
    max_msgs: int
    snapshot_covers: int | None = None
    snapshot_taken_at: datetime | None = None
    snapshot_writer: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def nats_status(*, snapshots: bool = False, timeout: float = STATUS_TIMEOUT_SECONDS) -> NatsStatus:
    """This node's consumer against the group's stream, asked of the server now (see the module
    docstring); ``snapshots``: also read the newest snapshot's header (downloads the objects:
    for ``configsync nats status``, not for every scrape). Never raises for the server."""
    max_age = float(app_settings.NATS_MAX_AGE_SECONDS or 0)
    max_msgs = int(app_settings.NATS_MAX_MSGS or 0)
    empty: dict[str, Any] = {
        "lag": None,
        "pending": None,
        "ack_pending": None,
        "stream_first_seq": None,
        "stream_last_seq": None,
        "ack_floor_seq": None,
    }
    if not app_settings.nats_configured:
        return NatsStatus(
            configured=False,
            followed=False,
            server="",
            stream="",
            consumer="",
            reachable=False,
            error="",
            max_age_seconds=max_age,
            max_msgs=max_msgs,
            **empty,
        )
    followed = nats_peer() is not None
    try:
        link = nats_transport(timeout=timeout)
    except TransportError as exc:
        return NatsStatus(
            configured=True,
            followed=followed,
            server="",
            stream="",
            consumer="",
            reachable=False,
            error=str(exc),
            max_age_seconds=max_age,
            max_msgs=max_msgs,
            **empty,
        )
    base: dict[str, Any] = {
        "configured": True,
        "followed": followed,
        "server": link.host,
        "stream": link.stream,
        "consumer": link.durable,
    }
    try:
        lag: ConsumerLag = link.lag()
        snap = link.snapshot_latest() if snapshots else None
    except TransportError as exc:
        return NatsStatus(
            **base,
            reachable=False,
            error=str(exc),
            max_age_seconds=max_age,
            max_msgs=max_msgs,
            **empty,
        )
    finally:
        link.close()
    return NatsStatus(
        **base,
        reachable=True,
        error="",
        lag=lag.lag,
        pending=lag.pending,
        ack_pending=lag.ack_pending,
        stream_first_seq=lag.stream_first_seq,
        stream_last_seq=lag.stream_last_seq,
        ack_floor_seq=lag.ack_floor_seq,
        max_age_seconds=lag.max_age_seconds,
        max_msgs=lag.max_msgs,
        snapshot_covers=snap.covers if snap else None,
        snapshot_taken_at=(datetime.fromtimestamp(snap.taken_ms / 1000, tz=UTC) if snap else None),
        snapshot_writer=snap.writer if snap else "",
    )
