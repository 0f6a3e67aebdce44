"""Ten in-process nodes on one JetStream stream (``InProcessNatsGroup``): random writes, deletes
and concurrent edits on all of them converge to identical digests; an idle period costs no
node a single message to the server; a change costs every node the same few, however many
changes came before (O(1) per node, counted by the server's own monitoring endpoint).

``bench/nats.py`` runs the same group with fifty nodes and measures write-to-visible times.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.support.inprocess import InProcessNatsGroup
from tests.support.nats_node import nats_databases, nats_group, nats_server
from tests.support.nats_server import NatsServer

__all__ = ["nats_databases", "nats_group", "nats_server"]  # the fixtures, for this module

pytestmark = pytest.mark.multinode

NODES = [f"n{i:02d}" for i in range(10)]
KEYS = [f"FLEET_{i}" for i in range(8)]
SEED = 1616


def _sent(server: NatsServer, group: InProcessNatsGroup) -> dict[str, int]:
    """Messages each node's connections sent the server so far (its link and its doorbell)."""
    sent = server.sent_by()
    return {
        name: sent.get(f"configsync {name}", 0) + sent.get(f"configsync-bell {name}", 0)
        for name in group.members
    }


def test_random_writes_deletes_and_concurrent_edits_converge(
    nats_group: InProcessNatsGroup,
) -> None:
    rng = random.Random(SEED)
    for name in NODES:
        nats_group.join(name)
    live: dict[str, str] = {}
    holder: dict[str, str] = {}
    for step in range(24):
        name, key = rng.choice(NODES), rng.choice(KEYS)
        if key in live and rng.random() < 0.25:
            # A delete, on the node that wrote the key last (it holds it, followed or not).
            nats_group.delete(holder[key], key)
            live.pop(key)
        else:
            value = f"v{step}-{name}"
            nats_group.write(name, key, value)
            live[key], holder[key] = value, name
        if rng.random() < 0.3:
            nats_group.follow_once()
    nats_group.settle()
    for name in NODES:
        assert nats_group.values(name) == live, name

    # Concurrent edits: every node writes the same key before anyone has read another's.
    for name in NODES:
        nats_group.write(name, "FLEET_SHARED", f"from-{name}", push=False)
    for name in NODES:
        nats_group.push(name)
    nats_group.settle()

    digests = nats_group.digests()
    assert len(set(digests.values())) == 1, digests
    winners = {nats_group.values(name)["FLEET_SHARED"] for name in NODES}
    assert len(winners) == 1 and winners <= {f"from-{name}" for name in NODES}
    assert nats_group.cycle_errors == []


def test_an_idle_period_costs_nothing_and_a_change_costs_each_node_the_same(
    nats_group: InProcessNatsGroup, nats_server: NatsServer
) -> None:
    for name in NODES:
        nats_group.join(name)
    nats_group.write(NODES[0], "WARM", "up")
    nats_group.settle()

    before = _sent(nats_server, nats_group)
    cycles = sum(m.cycles for m in nats_group.members.values())
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # an idle period: the followers wait for their bells
        nats_group.follow_once(wait=0.1)
    assert _sent(nats_server, nats_group) == before
    assert sum(m.cycles for m in nats_group.members.values()) == cycles

    costs: list[dict[str, int]] = []
    for round_ in range(3):
        start = _sent(nats_server, nats_group)
        nats_group.write(NODES[round_], f"CHANGE_{round_}", "x")
        nats_group.settle()
        end = _sent(nats_server, nats_group)
        costs.append({name: end[name] - start[name] for name in NODES})
    for round_, cost in enumerate(costs):
        writer = NODES[round_]
        readers = {cost[name] for name in NODES if name != writer}
        # Every reader paid the same (one cycle's requests), and a handful of them.
        assert len(readers) == 1 and 0 < readers.pop() <= 8, cost
        assert 0 < cost[writer] <= 24, cost
    # The third change cost each reader what the first did: nothing grows with the history.
    assert {c for n, c in costs[2].items() if n not in NODES[:3]} == {
        c for n, c in costs[0].items() if n not in NODES[:3]
    }
