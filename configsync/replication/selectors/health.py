"""Sync health at a glance: one word per peer and one for the node (the admin's index and its sync
overview page). Built on ``selectors.status`` (``sync_status``); reads only.

**A peer's state** (first that applies):

* ``disabled``: the peer is switched off, or this node's deployment mode does not use its
  transport (no cycle runs with it);
* ``failing``: its latest finished cycle failed;
* ``behind``: it has not acknowledged some of our changes (``changes_behind`` > 0), or no cycle
  with it has succeeded yet;
* ``healthy``: otherwise.

A peer is ``behind`` for a moment after every local write (until push-on-write or the next cycle
carries it); only ``failing`` says something is wrong by itself.

**The node's state**: ``failing`` when this node's clock is out of bounds or every active peer
(not disabled) is failing; ``degraded`` when some active peer is failing or behind, or conflicts,
quarantined changes, unreadable records or clock warnings wait for an operator; ``healthy``
otherwise (a node without peers is healthy).
"""

from __future__ import annotations

from dataclasses import dataclass

from configsync.replication.selectors.status import (
    CLOCK_OK,
    CLOCK_OUT_OF_BOUNDS,
    NodeStatus,
    PeerStatus,
    sync_status,
)

HEALTHY = "healthy"
BEHIND = "behind"
FAILING = "failing"
DISABLED = "disabled"
DEGRADED = "degraded"
PEER_STATES = (HEALTHY, BEHIND, FAILING, DISABLED)
NODE_STATES = (HEALTHY, DEGRADED, FAILING)


@dataclass(frozen=True)
class PeerHealth:
    """A peer's status and its state, with the reason in words (never a value or a URL)."""

    status: PeerStatus
    state: str
    reason: str


@dataclass(frozen=True)
class SyncHealth:
    """The node's status, its state and the reasons, and every peer's health."""

    node: NodeStatus
    state: str
    reasons: list[str]
    peers: list[PeerHealth]


def peer_health_state(status: PeerStatus) -> tuple[str, str]:
    """``(state, reason)`` of one peer (see the module docstring)."""
    if not status.enabled:
        return DISABLED, "switched off"
    if not status.in_mode:
        return DISABLED, f"the deployment mode does not use the {status.transport} transport"
    if status.last_run_ok is False:
        return FAILING, "the latest cycle failed"
    if status.last_success_at is None:
        return BEHIND, "no cycle has succeeded yet"
    if status.changes_behind:
        return BEHIND, f"{status.changes_behind} change(s) not acknowledged yet"
    return HEALTHY, "in step"


def sync_health(*, node: str) -> SyncHealth:
    """This node's sync health: ``sync_status`` judged (``node``: this node's id)."""
    status = sync_status(node=node)
    peers = [PeerHealth(peer, *peer_health_state(peer)) for peer in status.peers]
    active = [peer for peer in peers if peer.state != DISABLED]
    failing = [peer.status.name for peer in active if peer.state == FAILING]
    behind = [peer.status.name for peer in active if peer.state == BEHIND]
    reasons: list[str] = []
    if status.clock.state == CLOCK_OUT_OF_BOUNDS:
        reasons.append("this node's clock is out of bounds")
    elif status.clock.state != CLOCK_OK:
        reasons.append("clock warning")
    if failing:
        reasons.append(f"failing: {', '.join(failing)}")
    if behind:
        reasons.append(f"behind: {', '.join(behind)}")
    if status.open_conflicts:
        reasons.append(f"{status.open_conflicts} open conflict(s)")
    if status.open_quarantined:
        reasons.append(f"{status.open_quarantined} quarantined change(s)")
    if status.unreadable_records:
        reasons.append(f"{status.unreadable_records} unreadable record(s)")
    if status.clock.state == CLOCK_OUT_OF_BOUNDS or (active and len(failing) == len(active)):
        state = FAILING
    elif reasons:
        state = DEGRADED
    else:
        state = HEALTHY
    return SyncHealth(node=status, state=state, reasons=reasons, peers=peers)
