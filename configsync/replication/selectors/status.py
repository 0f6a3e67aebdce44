"""Reads behind ``GET /api/v1/sync/status``, ``configsync status``, health and ``/metrics``.

Every figure is derived from the database (``SyncRun``, ``PeerCheckpoint``, ``ReplicatedRecord``,
``Conflict``, ``QuarantinedChange``, ``NodeClock``), so the web process reports what the Celery
worker did, and the cost is a fixed number of indexed queries whatever the number of peers,
runs and records (``peer_statuses`` reads every peer at once).

**Clocks.** ``clock_assess`` is the one judgement of this node's clock, used by status, health
and the sync cycle's log line. Three figures feed it: the last timestamp this node's HLC issued
(``NodeClock.last_wall_ms``), this machine's physical clock, and each peer's clock as measured by
the last sync run (``SyncRun.skew_ms``: the peer's ``clock_ms`` — or its HTTP ``Date`` — against
the midpoint of our request). This node is **out of bounds** when the timestamps it issues now
(``max(stored HLC, physical clock)``) are more than ``CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS`` ahead
of its physical clock (a clock set back after running ahead: the HLC never goes back) or of a
peer's clock: its peers hold its changes until they are within the bound. A peer's skew above
``CONFIGSYNC_SKEW_WARNING_SECONDS`` is a warning: last-write-wins between the two nodes may be
decided by the clocks' error rather than by real time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, F, Max, Q, Subquery, Window
from django.db.models.functions import RowNumber

from configsync.conf import app_settings
from configsync.models import (
    Conflict,
    Peer,
    PeerCheckpoint,
    QuarantinedChange,
    ReplicatedRecord,
    SyncRun,
)
from configsync.replication.hlc import physical_now_ms
from configsync.replication.selectors.feed import clock_hlc_ms, feed_positions, records_unreadable
from configsync.replication.selectors.mode import deployment_mode, mode_problems, mode_transports
from configsync.replication.selectors.quarantine import quarantine_open_count

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
    transport: str
    base_url: str
    enabled: bool
    in_mode: bool
    """Whether this node's deployment mode uses the peer's transport (cycles run with it)."""
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
    clock_state: str
    our_clock_ahead_ms: int | None
    open_quarantined: int
    quarantined_last_run: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


CLOCK_OK = "ok"
CLOCK_WARNING = "warning"
CLOCK_OUT_OF_BOUNDS = "out_of_bounds"


@dataclass(frozen=True)
class ClockStatus:
    """This node's clock as judged by ``clock_assess`` (see the module docstring).

    ``hlc_ahead_ms``: how far the timestamps this node issues now are ahead of its physical
    clock (0 normally). ``problems``: one sentence each, naming the peer; ``recovery``: what the
    operator does about it (empty when ``state`` is ok).
    """

    state: str
    physical_ms: int
    hlc_ms: int | None
    hlc_ahead_ms: int
    max_skew_ms: int
    warning_ms: int
    problems: list[str]
    recovery: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seconds(ms: int) -> str:
    return f"{abs(ms) / 1000:.1f} s"


def peer_clock_state(skew_ms: int | None, *, hlc_ahead_ms: int = 0) -> tuple[str, int | None]:
    """``(state, our clock ahead of the peer's in ms)`` for one peer's measured ``skew_ms``."""
    if skew_ms is None:
        return CLOCK_OK, None
    bound = int(app_settings.MAX_CLOCK_SKEW_SECONDS * 1000)
    warning = int(float(app_settings.SKEW_WARNING_SECONDS) * 1000)
    ours_ahead = hlc_ahead_ms - skew_ms
    if ours_ahead > bound or skew_ms > bound:
        return CLOCK_OUT_OF_BOUNDS, ours_ahead
    if abs(skew_ms) > warning or ours_ahead > warning:
        return CLOCK_WARNING, ours_ahead
    return CLOCK_OK, ours_ahead


def clock_assess(
    *, now_ms: int, hlc_ms: int | None, peer_skews: dict[str, int | None]
) -> ClockStatus:
    """Judge this node's clock from its stored HLC, its physical clock and its peers' skews."""
    bound = int(app_settings.MAX_CLOCK_SKEW_SECONDS * 1000)
    warning = int(float(app_settings.SKEW_WARNING_SECONDS) * 1000)
    hlc_ahead = max((hlc_ms or 0) - now_ms, 0)
    problems: list[str] = []
    own = False  # this node's own timestamps are beyond the bound: its peers hold its writes
    if hlc_ahead > bound:
        own = True
        problems.append(
            f"this node's clock issues timestamps {_seconds(hlc_ahead)} ahead of its physical "
            "clock (the clock was set back after running ahead; the HLC never goes back)"
        )
    state = CLOCK_OUT_OF_BOUNDS if own else CLOCK_OK
    for name, skew in sorted(peer_skews.items()):
        peer_state, ours_ahead = peer_clock_state(skew, hlc_ahead_ms=hlc_ahead)
        if skew is None or ours_ahead is None or peer_state == CLOCK_OK:
            continue
        if ours_ahead > bound:
            own = True
            state = CLOCK_OUT_OF_BOUNDS
            if hlc_ahead <= bound:  # else the stored-clock problem above already says it
                problems.append(
                    f"this node's clock is {_seconds(ours_ahead)} ahead of peer {name}'s "
                    f"(beyond the allowed {_seconds(bound)}): {name} holds this node's changes"
                )
        elif skew > bound:
            state = state if state == CLOCK_OUT_OF_BOUNDS else CLOCK_WARNING
            problems.append(
                f"peer {name}'s clock is {_seconds(skew)} ahead of this node's (beyond the "
                f"allowed {_seconds(bound)}): this node holds {name}'s changes until they are "
                "within the bound; fix the clock of whichever node is wrong"
            )
        elif abs(skew) > warning or ours_ahead > warning:
            state = state if state == CLOCK_OUT_OF_BOUNDS else CLOCK_WARNING
            problems.append(
                f"clock skew with peer {name}: {skew:+d} ms (its clock minus ours; warning above "
                f"{_seconds(warning)}): last-write-wins between the two may follow the clocks' "
                "error rather than real time (such conflicts are marked skew-affected)"
            )
    recovery = ""
    if own:
        wait = ""
        if hlc_ahead > bound:
            minutes = (hlc_ahead - bound) / 60_000
            wait = (
                f" This node's stored clock falls back within the bound by itself in about "
                f"{minutes:.1f} min once the physical clock is right."
            )
        recovery = (
            "Fix this machine's clock (enable NTP, e.g. `timedatectl set-ntp true` or chrony). "
            "Meanwhile this node keeps accepting writes, stamped with its clock (which never goes "
            "back): its peers hold them (quarantined, retried every cycle) and apply them once "
            "they are within CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS, when they win over edits made "
            "elsewhere in the meantime." + wait + " Until this clears, make edits on another "
            "node; afterwards review `configsync conflicts` (skew-affected ones)."
        )
    elif state != CLOCK_OK and any(
        skew is not None and skew > bound for skew in peer_skews.values()
    ):
        recovery = (
            "Fix the clock of the node that is wrong (enable NTP); held changes apply by "
            "themselves once within CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS."
        )
    return ClockStatus(
        state=state,
        physical_ms=now_ms,
        hlc_ms=hlc_ms,
        hlc_ahead_ms=hlc_ahead,
        max_skew_ms=bound,
        warning_ms=warning,
        problems=problems,
        recovery=recovery,
    )


def latest_peer_skews(*, enabled_only: bool = True) -> dict[str, int | None]:
    """Per peer name, its clock minus ours (ms) as last measured (``None``: never)."""
    peers = list(
        (Peer.objects.filter(enabled=True) if enabled_only else Peer.objects).order_by("name")
    )
    skews = peers_clock_skew(peers)
    return {peer.name: skews[peer.pk] for peer in peers}


def clock_status(*, peer_skews: dict[str, int | None] | None = None) -> ClockStatus:
    """This node's clock judged now (see ``clock_assess``)."""
    return clock_assess(
        now_ms=physical_now_ms(),
        hlc_ms=clock_hlc_ms(),
        peer_skews=latest_peer_skews() if peer_skews is None else peer_skews,
    )


@dataclass(frozen=True)
class NodeStatus:
    """This node and every peer."""

    node_id: str
    deployment_mode: str
    sync_interval_seconds: int
    last_seq: int
    open_conflicts: int
    unreadable_records: int
    open_quarantined: int
    clock: ClockStatus
    warnings: list[str]
    peers: list[PeerStatus]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["peers"] = [peer.as_dict() for peer in self.peers]
        return data


def peer_changes_behind(*, peer: Peer) -> int:
    """Our feed entries the peer has not acknowledged, leaving out those it sent us."""
    return peers_changes_behind([peer])[peer.pk]


def peers_changes_behind(peers: list[Peer]) -> dict[int, int]:
    """``peer_changes_behind`` of each peer (by primary key), in two queries whatever their
    number."""
    if not peers:
        return {}
    cursors = dict(
        PeerCheckpoint.objects.filter(
            peer__in=peers, direction=PeerCheckpoint.Direction.PUSH
        ).values_list("peer_id", "cursor")
    )
    positions = feed_positions([cursors.get(peer.pk) for peer in peers])
    counts = {}
    for peer, position in zip(peers, positions, strict=True):
        pending = Q(seq__gt=position)
        if peer.node_id:
            pending &= ~Q(received_from=peer.node_id)
        counts[f"p{peer.pk}"] = Count("pk", filter=pending)
    found = ReplicatedRecord.objects.aggregate(**counts)
    return {peer.pk: found[f"p{peer.pk}"] or 0 for peer in peers}


def peer_clock_skew(*, peer: Peer) -> int | None:
    """The peer's clock minus ours (ms) as last measured by a run; ``None`` when never."""
    return peers_clock_skew([peer])[peer.pk]


def peers_clock_skew(peers: list[Peer]) -> dict[int, int | None]:
    """``peer_clock_skew`` of each peer (by primary key), in one query."""
    latest = SyncRun.objects.filter(
        pk__in=Subquery(
            SyncRun.objects.filter(peer__in=peers, skew_ms__isnull=False)
            .values("peer_id")
            .annotate(last=Max("id"))
            .values("last")
        )
    ).values_list("peer_id", "skew_ms")
    found = dict(latest) if peers else {}
    return {peer.pk: found.get(peer.pk) for peer in peers}


def peer_status(*, peer: Peer, recent: int = RECENT_RUNS, hlc_ahead_ms: int = 0) -> PeerStatus:
    """The status of one peer (see ``PeerStatus``); ``hlc_ahead_ms`` as in ``ClockStatus``."""
    return peer_statuses([peer], recent=recent, hlc_ahead_ms=hlc_ahead_ms)[0]


def peer_statuses(
    peers: list[Peer], *, recent: int = RECENT_RUNS, hlc_ahead_ms: int = 0
) -> list[PeerStatus]:
    """``peer_status`` of each peer, in order, in a fixed number of queries whatever the number
    of peers and runs (the admin's overview and peer list, ``/metrics``)."""
    if not peers:
        return []
    finished = Q(finished_at__isnull=False)
    # Newest by id, not by time: a clock set back would otherwise hide every run made since
    # behind the ones stamped while it ran ahead.
    kinds = ("last", "last_finished", "last_ok", "last_failed", "last_skew")
    latest: dict[int, dict[str, int | None]] = {
        row[0]: dict(zip(kinds, row[1:], strict=True))
        for row in SyncRun.objects.filter(peer__in=peers)
        .values("peer_id")
        .annotate(
            last=Max("id"),
            last_finished=Max("id", filter=finished),
            last_ok=Max("id", filter=finished & Q(ok=True)),
            last_failed=Max("id", filter=finished & Q(ok=False)),
            last_skew=Max("id", filter=Q(skew_ms__isnull=False)),
        )
        .values_list("peer_id", *kinds)
        .order_by()
    }
    runs = SyncRun.objects.in_bulk(
        {run_id for row in latest.values() for run_id in row.values() if run_id is not None}
    )
    outcomes: dict[int, list[bool]] = {}
    for peer_id, ok in (
        SyncRun.objects.filter(finished, peer__in=peers)
        .annotate(rank=Window(RowNumber(), partition_by=F("peer_id"), order_by=F("id").desc()))
        .filter(rank__lte=recent)
        .order_by("peer_id", "-id")
        .values_list("peer_id", "ok")
    ):
        outcomes.setdefault(peer_id, []).append(ok)
    behind = peers_changes_behind(peers)
    conflicts = dict(
        Conflict.objects.filter(
            status=Conflict.Status.OPEN, source__in=[peer.name for peer in peers]
        )
        .values("source")
        .annotate(n=Count("id"))
        .values_list("source", "n")
        .order_by()
    )
    sources = {peer.name for peer in peers} | {peer.node_id for peer in peers if peer.node_id}
    quarantined = dict(
        QuarantinedChange.objects.filter(status=QuarantinedChange.Status.OPEN, source__in=sources)
        .values("source")
        .annotate(n=Count("id"))
        .values_list("source", "n")
        .order_by()
    )
    transports = mode_transports()
    statuses = []
    for peer in peers:
        ids = latest.get(peer.pk, {})
        last_run, last_finished, last_ok, last_failed, last_skew = (
            runs.get(ids[kind]) if ids.get(kind) is not None else None for kind in kinds
        )
        done = outcomes.get(peer.pk, [])
        skew = last_skew.skew_ms if last_skew else None
        clock_state, ours_ahead = peer_clock_state(skew, hlc_ahead_ms=hlc_ahead_ms)
        statuses.append(
            PeerStatus(
                id=peer.pk,
                name=peer.name,
                transport=peer.transport,
                base_url=peer.base_url,
                enabled=peer.enabled,
                in_mode=peer.transport in transports,
                node_id=peer.node_id,
                last_run_at=last_run.started_at if last_run else None,
                last_run_ok=done[0] if done else None,
                last_success_at=last_ok.finished_at if last_ok else None,
                last_error=last_failed.error if last_failed else "",
                last_error_at=last_failed.finished_at if last_failed else None,
                changes_behind=behind[peer.pk],
                success_rate=(sum(done) / len(done)) if done else None,
                recent_runs=len(done),
                open_conflicts=conflicts.get(peer.name, 0),
                clock_skew_ms=skew,
                clock_state=clock_state,
                our_clock_ahead_ms=ours_ahead,
                open_quarantined=sum(
                    quarantined.get(source, 0) for source in {peer.name, peer.node_id or peer.name}
                ),
                quarantined_last_run=last_finished.quarantined if last_finished else 0,
            )
        )
    return statuses


def unreadable_record_count() -> int:
    """Records this node stores and relays but cannot decrypt (a key it lacks)."""
    return len(records_unreadable())


def sync_status(
    *, node: str, recent: int = RECENT_RUNS, peer_name: str | None = None
) -> NodeStatus:
    """This node's replication status: identity (``node``, this node's id, which the caller
    has: a selector never creates it), mode, and one ``PeerStatus`` per peer."""
    peers = Peer.objects.order_by("name")
    if peer_name is not None:
        peers = peers.filter(name=peer_name)
    last_seq = ReplicatedRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    clock = clock_status()
    statuses = peer_statuses(list(peers), recent=recent, hlc_ahead_ms=clock.hlc_ahead_ms)
    open_quarantined = quarantine_open_count()
    unreadable = unreadable_record_count()
    mode = deployment_mode()
    return NodeStatus(
        node_id=node,
        deployment_mode=mode,
        sync_interval_seconds=app_settings.sync_interval_seconds,
        last_seq=last_seq or 0,
        open_conflicts=Conflict.objects.filter(status=Conflict.Status.OPEN).count(),
        unreadable_records=unreadable,
        open_quarantined=open_quarantined,
        clock=clock,
        warnings=[
            *mode_problems(mode=mode),
            *status_warnings(
                clock=clock,
                peers=statuses,
                open_quarantined=open_quarantined,
                unreadable=unreadable,
            ),
        ],
        peers=statuses,
    )


def status_warnings(
    *, clock: ClockStatus, peers: list[PeerStatus], open_quarantined: int, unreadable: int
) -> list[str]:
    """The sentences status shows first (CLI, API, admin): clock, quarantine, held changes."""
    warnings: list[str] = []
    if clock.state == CLOCK_OUT_OF_BOUNDS:
        warnings.append(
            "CLOCK OUT OF BOUNDS: " + "; ".join(clock.problems) + ". Recovery: " + clock.recovery
        )
    else:
        warnings.extend(f"clock: {problem}" for problem in clock.problems)
    if open_quarantined:
        warnings.append(
            f"{open_quarantined} received change(s) quarantined here (could not be stored; "
            "retried every cycle): see the admin's quarantined changes"
        )
    for peer in peers:
        if peer.quarantined_last_run:
            warnings.append(
                f"the last cycle with peer {peer.name} set aside {peer.quarantined_last_run} "
                f"change(s) (quarantined here or on {peer.name}; retried every cycle)"
            )
    if unreadable:
        warnings.append(f"{unreadable} record(s) hold ciphertext of a key this node lacks")
    return warnings
