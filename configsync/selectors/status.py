"""Reads behind ``GET /api/v1/sync/status``, ``configsync status`` and ``/metrics``.

Every figure is derived from the database (``SyncRun``, ``PeerCheckpoint``, ``ReplicatedRecord``,
``Conflict``), so the web process reports what the Celery worker did, and the cost is a few
indexed queries per peer whatever the number of records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from configsync.conf import app_settings
from configsync.models import (
    Conflict,
    Peer,
    PeerCheckpoint,
    ReplicatedRecord,
    SyncRun,
)
from configsync.selectors.replication import feed_position, records_unreadable

RECENT_RUNS = 20
"""How many of a peer's latest finished runs the success rate covers."""


@dataclass(frozen=True)
class PeerStatus:
    """What this node knows of its exchange with one peer. Ids and counts only, never values.

    ``last_error`` is the latest failure even when a success followed (compare ``last_error_at``
    with ``last_success_at``); ``last_run_ok`` is the outcome of the latest finished run.
    """

    id: int
    name: str
    base_url: str
    enabled: bool
    node_id: str
    last_run_at: datetime | None
    last_run_ok: bool | None
    last_success_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    changes_behind: int
    success_rate: float | None
    recent_runs: int
    open_conflicts: int
    clock_skew_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NodeStatus:
    """This node and every peer."""

    node_id: str
    deployment_mode: str
    sync_interval_seconds: int
    last_seq: int
    open_conflicts: int
    unreadable_records: int
    peers: list[PeerStatus]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["peers"] = [peer.as_dict() for peer in self.peers]
        return data


def peer_changes_behind(*, peer: Peer) -> int:
    """Our feed entries the peer has not acknowledged, leaving out those it sent us."""
    cursor = (
        PeerCheckpoint.objects.filter(peer=peer, direction=PeerCheckpoint.Direction.PUSH)
        .values_list("cursor", flat=True)
        .first()
    )
    pending = ReplicatedRecord.objects.filter(seq__gt=feed_position(cursor))
    if peer.node_id:
        pending = pending.exclude(received_from=peer.node_id)
    return pending.count()


def peer_clock_skew(*, peer: Peer) -> int | None:
    """The peer's clock minus ours (ms) as last measured by a run; ``None`` when never."""
    return (
        SyncRun.objects.filter(peer=peer, skew_ms__isnull=False)
        .order_by("-started_at", "-id")
        .values_list("skew_ms", flat=True)
        .first()
    )


def peer_status(*, peer: Peer, recent: int = RECENT_RUNS) -> PeerStatus:
    """The status of one peer (see ``PeerStatus``)."""
    runs = SyncRun.objects.filter(peer=peer)
    finished = runs.filter(finished_at__isnull=False)
    last_run = runs.order_by("-started_at", "-id").first()
    last_ok = finished.filter(ok=True).order_by("-finished_at", "-id").first()
    last_failed = finished.filter(ok=False).order_by("-finished_at", "-id").first()
    outcomes = list(finished.order_by("-started_at", "-id").values_list("ok", flat=True)[:recent])
    return PeerStatus(
        id=peer.pk,
        name=peer.name,
        base_url=peer.base_url,
        enabled=peer.enabled,
        node_id=peer.node_id,
        last_run_at=last_run.started_at if last_run else None,
        last_run_ok=outcomes[0] if outcomes else None,
        last_success_at=last_ok.finished_at if last_ok else None,
        last_error=last_failed.error if last_failed else "",
        last_error_at=last_failed.finished_at if last_failed else None,
        changes_behind=peer_changes_behind(peer=peer),
        success_rate=(sum(outcomes) / len(outcomes)) if outcomes else None,
        recent_runs=len(outcomes),
        open_conflicts=Conflict.objects.filter(
            status=Conflict.Status.OPEN, source=peer.name
        ).count(),
        clock_skew_ms=peer_clock_skew(peer=peer),
    )


def deployment_mode() -> str:
    """``CONFIGSYNC_DEPLOYMENT_MODE``, else ``LOCAL_EXTERNAL`` with peers and ``LOCAL_ONLY``."""
    configured = str(app_settings.DEPLOYMENT_MODE or "")
    if configured:
        return configured
    has_peers = bool(app_settings.PEERS) or Peer.objects.filter(enabled=True).exists()
    return "LOCAL_EXTERNAL" if has_peers else "LOCAL_ONLY"


def unreadable_record_count() -> int:
    """Records this node stores and relays but cannot decrypt (a key it lacks)."""
    return len(records_unreadable())


def sync_status(*, recent: int = RECENT_RUNS, peer_name: str | None = None) -> NodeStatus:
    """This node's replication status: identity, mode, and one ``PeerStatus`` per peer."""
    from configsync.services.node import node_id

    peers = Peer.objects.order_by("name")
    if peer_name is not None:
        peers = peers.filter(name=peer_name)
    last_seq = ReplicatedRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    return NodeStatus(
        node_id=node_id(),
        deployment_mode=deployment_mode(),
        sync_interval_seconds=int(app_settings.SYNC_INTERVAL_SECONDS or 0),
        last_seq=last_seq or 0,
        open_conflicts=Conflict.objects.filter(status=Conflict.Status.OPEN).count(),
        unreadable_records=unreadable_record_count(),
        peers=[peer_status(peer=peer, recent=recent) for peer in peers],
    )
