"""A node that was away catches up through JetStream: stopped (its connections dropped without
a word, nothing it fetched acknowledged) while the others write, then started again on its
database, it reads exactly what it missed from its durable cursor; a node that joins late reads
the stream's history from the start. Either way every digest ends identical.
"""

from __future__ import annotations

import pytest

from tests.support.inprocess import InProcessNatsGroup, PrefetchingNatsTransport
from tests.support.nats_node import nats_databases, nats_group, nats_server

__all__ = ["nats_databases", "nats_group", "nats_server"]  # the fixtures, for this module

pytestmark = pytest.mark.multinode


def test_a_stopped_node_catches_up_from_its_durable_cursor(
    nats_group: InProcessNatsGroup,
) -> None:
    for name in ("a", "b", "c"):
        nats_group.join(name)
    for i in range(5):
        nats_group.write("a", f"BEFORE_{i}", "x")
    nats_group.settle()
    assert nats_group.values("c") == nats_group.values("a")

    # c reads one more change but dies before committing it (nothing acknowledged).
    nats_group.write("a", "IN_FLIGHT", "x")
    link = nats_group.members["c"].link
    assert isinstance(link, PrefetchingNatsTransport)
    link.pull(link.cursor, 10, with_log=True)
    nats_group.stop("c")
    for i in range(7):
        nats_group.write("b", f"AWAY_{i}", "y")
    nats_group.delete("a", "BEFORE_0")
    nats_group.settle()  # a and b only: c is down
    assert "AWAY_0" not in nats_group.values("c")

    nats_group.restart("c")
    caught_up = nats_group.members["c"].last
    # Exactly what it missed: the uncommitted change, seven writes and a delete, not the five
    # it had committed before.
    assert caught_up is not None and caught_up.pulled == 9
    nats_group.settle()
    digests = nats_group.digests()
    assert len(set(digests.values())) == 1, digests
    assert "BEFORE_0" not in nats_group.values("c") and "IN_FLIGHT" in nats_group.values("c")


def test_a_node_that_joins_late_catches_up_from_history(nats_group: InProcessNatsGroup) -> None:
    for name in ("a", "b"):
        nats_group.join(name)
    for i in range(20):
        nats_group.write("a" if i % 2 else "b", f"HISTORY_{i % 8}", f"v{i}")
    nats_group.delete("a", "HISTORY_3")
    nats_group.settle()

    late = nats_group.join("late")  # its first cycle reads the stream from the start
    assert late.last is not None and late.last.pulled == 21
    nats_group.settle()
    assert nats_group.values("late") == nats_group.values("a")
    digests = nats_group.digests()
    assert len(set(digests.values())) == 1, digests
