"""The reference model every convergence test compares the nodes against.

A run records every operation the nodes accepted (:class:`Op`): which node, which record, the value
written (``None`` for a delete) and the hybrid-logical-clock timestamp the node gave it. The
model is the replication rule stated as plainly as possible, with none of configsync's code: for
each record the operation with the greatest timestamp wins (``HLC`` orders by wall time, logical
counter, then node id; at the same wall time and counter a delete beats a write before the node
id is asked); a winning delete leaves a tombstone, so the record is absent; every other
accepted operation on a record that more than one node wrote is a loser the nodes keep as a
conflict or as history, never silently the winner.

Operations a node refused (a validation error, a delete of nothing) are recorded with
``accepted=False`` and play no part. An operation whose acknowledgement was lost (the client timed
out, the node was killed under it) is recorded with ``acked=False``: it may or may not have been
committed, so the model allows either outcome for it (:func:`expected_state` returns it under
``uncertain``). One whose acknowledgement was lost *after* the node committed it (the harness's
proxy saw the 2xx and reset the writer's connection instead of forwarding it) is recorded with
``acked=False, committed=True``: the writer saw a failure, but the write exists, so the model
counts it as a possibly-acknowledged write, as sure as an acknowledged one: if it wins, every node
must end with it.

A write whose timestamp was beyond a peer's tolerated clock skew is not refused: the peer holds
it in quarantine (reason ``clock skew``) and applies it once the timestamp is within the bound.
Such operations are recorded with ``held_for_skew=True`` (:meth:`Op.held`): they take part like
any accepted write, and :attr:`Expectation.counts` reports how many were held and applied
(``held_applied`` is filled from the nodes' quarantines by the harness; a held write still open
after convergence is a failure).

``digest`` hashes a state the same way for the model and for a node's dump, so a failure can
print both digests and the first records that differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from configsync.replication.hlc import HLC

Key = tuple[str, str]  # (model label, natural key)


@dataclass(frozen=True)
class Op:
    """One write (``value`` set) or delete (``value is None``) a node was asked to make."""

    node: str
    model: str
    key: str
    value: str | None
    hlc: str | None  # the timestamp the node gave it; None when refused or never known
    accepted: bool = True
    acked: bool = True
    committed: bool = False
    """The acknowledgement was lost after the node committed (``acked`` is then ``False``)."""
    held_for_skew: bool = False
    """Some peer held it in quarantine for clock skew before applying it."""

    @property
    def record(self) -> Key:
        return (self.model, self.key)

    @property
    def sure(self) -> bool:
        """Committed for certain: acknowledged, or its acknowledgement lost after the commit."""
        return self.acked or self.committed


@dataclass
class Expectation:
    """What the nodes must converge to.

    ``state`` maps each record the model is sure about to its value (absent = deleted or never
    written). ``uncertain`` maps a record to every value it may end with (``None`` = absent),
    because an unacknowledged operation on it may or may not have committed.
    """

    state: dict[Key, str] = field(default_factory=dict)
    uncertain: dict[Key, set[str | None]] = field(default_factory=dict)
    losers: dict[Key, list[Op]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """How the history's operations were accounted: ``ops``, ``refused``, ``acked``,
    ``ack_lost_committed`` (lost acknowledgements of committed writes), ``ack_lost_committed_won``
    (of those, the ones that decide their record: every node must hold them), ``unknown``
    (unacknowledged, never found committed), ``held_for_skew`` and ``held_won``."""

    lost: list[Op] = field(default_factory=list)
    """Writes known committed (``committed``) whose timestamp nobody could find: lost."""

    def verdict(self) -> str:
        """The counts as one line, for the run's report."""
        return ", ".join(f"{name} {value}" for name, value in self.counts.items())

    def check(self, observed: Mapping[Key, str]) -> list[str]:
        """Every way ``observed`` (one node's live records) breaks this expectation, as text."""
        problems = [
            f"{op.record}: committed write {op.value!r} on {op.node} lost" for op in self.lost
        ]
        for record in sorted(set(self.state) | set(observed) | set(self.uncertain)):
            have = observed.get(record)
            if record in self.uncertain:
                if have not in self.uncertain[record]:
                    problems.append(
                        f"{record}: {have!r} not among {sorted(map(repr, self.uncertain[record]))}"
                    )
            elif self.state.get(record) != have:
                problems.append(f"{record}: expected {self.state.get(record)!r}, node has {have!r}")
        return problems


def _order(op: Op) -> tuple[tuple[int, int], bool, str]:
    """Last write wins, as every node decides it: the later ``(wall, logical)`` instant; at the
    same instant a delete beats a write (a tombstone is never undone by a racing write); then
    the greater node id."""
    stamp = HLC.parse(op.hlc)
    return (stamp.instant, op.value is None, stamp.node)


def _winner(ops: list[Op]) -> Op:
    return max(ops, key=_order)


def expected_state(ops: Iterable[Op]) -> Expectation:
    """Last write by HLC wins per record; deletes are tombstones; refused operations never count."""
    by_record: dict[Key, list[Op]] = {}
    ops = list(ops)
    result = Expectation()
    for op in ops:
        if op.accepted and op.hlc is not None:
            by_record.setdefault(op.record, []).append(op)
        elif op.accepted and op.committed:
            result.lost.append(op)
    result.counts = {
        "ops": len(ops),
        "refused": sum(not op.accepted for op in ops),
        "acked": sum(op.accepted and op.acked for op in ops),
        "ack_lost_committed": sum(op.accepted and op.committed for op in ops),
        "ack_lost_committed_won": 0,
        "unknown": sum(op.accepted and not op.sure for op in ops),
        "held_for_skew": sum(op.accepted and op.held_for_skew for op in ops),
        "held_won": 0,
    }
    for record, record_ops in by_record.items():
        sure = [op for op in record_ops if op.sure]
        unsure = [op for op in record_ops if not op.sure]
        winner = _winner(record_ops)
        result.losers[record] = [op for op in record_ops if op is not winner]
        if sure:
            top = _winner(sure)
            result.counts["ack_lost_committed_won"] += top.committed
            result.counts["held_won"] += top.held_for_skew
        if not unsure or (sure and all(_order(u) < _order(_winner(sure)) for u in unsure)):
            final = _winner(sure) if sure else None
            if final is not None and final.value is not None:
                result.state[record] = final.value
            continue
        # Any unacknowledged operation later than the last sure one may be the winner, or be lost.
        base = _winner(sure).value if sure else None
        later = [u for u in unsure if not sure or _order(u) > _order(_winner(sure))]
        result.uncertain[record] = {base} | {u.value for u in later}
    return result


def digest(state: Mapping[Key, str | None]) -> str:
    """A stable hash of a state: live records only, sorted, values as given."""
    live = sorted((model, key, value) for (model, key), value in state.items() if value is not None)
    return hashlib.sha256(json.dumps(live, separators=(",", ":")).encode()).hexdigest()
