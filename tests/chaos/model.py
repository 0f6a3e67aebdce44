"""The reference model every convergence test compares the nodes against.

A run records every operation the nodes accepted (:class:`Op`): which node, which record, the value
written (``None`` for a delete) and the hybrid-logical-clock timestamp the node gave it. The
model is the replication rule stated as plainly as possible, with none of configsync's code: for
each record the operation with the greatest timestamp wins (``HLC`` orders by wall time, logical
counter, then node id; at the same wall time and counter a delete beats a write before the node
id is asked); a winning delete leaves a tombstone, so the record is absent; every other
accepted operation on a record that more than one node wrote is a loser the nodes keep as a
conflict or as history, never silently the winner.

Operations a node refused (clock skew beyond ``MAX_CLOCK_SKEW_SECONDS``, a validation error) are
recorded with ``accepted=False`` and play no part. An operation whose acknowledgement was lost
(the client timed out, the node was killed after the commit) is recorded with ``acked=False``:
it may or may not have been committed, so the model allows either outcome for it
(:func:`expected_state` returns it under ``uncertain``).

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

    @property
    def record(self) -> Key:
        return (self.model, self.key)


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

    def check(self, observed: Mapping[Key, str]) -> list[str]:
        """Every way ``observed`` (one node's live records) breaks this expectation, as text."""
        problems: list[str] = []
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
    for op in ops:
        if op.accepted and op.hlc is not None:
            by_record.setdefault(op.record, []).append(op)
    result = Expectation()
    for record, record_ops in by_record.items():
        sure = [op for op in record_ops if op.acked]
        unsure = [op for op in record_ops if not op.acked]
        winner = _winner(record_ops)
        result.losers[record] = [op for op in record_ops if op is not winner]
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
