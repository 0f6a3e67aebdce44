"""A real partition: two nodes in network namespaces of their own, the veth link between them cut.

Nodes ``a`` and ``b`` (web, Celery worker and beat each, :mod:`multinode`) run inside the
namespaces of :func:`tests.chaos.netns.veth_pair` and peer over its veth pair, nothing else:
SQLite and the embedded filesystem broker, so no network service is needed in a namespace. The
test reaches them only where no network is involved: ``manage.py`` through each node's fork server
(a unix socket, started inside the namespace) and their SQLite files.

With both synced, one end of the veth goes down (the kernel drops what would cross); both sides
write and delete, one key edited on both; ``a``'s status must show ``b`` failing and neither node
may see the other's writes. The link comes back up and both must converge to what the reference
model (:mod:`tests.chaos.model`) computes from the recorded operations, each stamped with the HLC
its node gave it. A failure prints the history.

The convergence harness (``test_convergence.py``) cuts veths the same way, between three to five
nodes that reach PostgreSQL, Redis and the S3 server through forwarders; this smallest case needs
no forwarder and runs in the SQLite pass of ``.ci/run``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from multinode import Cluster, Node, wait_until
from tests.chaos.model import Expectation, Key, Op
from tests.chaos.netns import Unavailable, VethPair, veth_pair
from tests.chaos.workload import SETTING, History, digests, node_state, own_versions
from tests.support.multinode import run_cluster

pytestmark = [pytest.mark.multinode, pytest.mark.chaos, pytest.mark.timeout(300)]

SETTING_PREFIX = f"NETNS_{os.getpid()}_"
USER_PREFIX = f"netns-{os.getpid()}-"  # no user is written: the dump holds settings only
CONVERGE_TIMEOUT = 60.0


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[tuple[Cluster, VethPair]]:
    if any(os.environ.get(v) for v in ("TEST_DATABASE_URL", "REDIS_URL", "MULTINODE_BROKER_URL")):
        pytest.skip(
            "the nodes in network namespaces use SQLite and the embedded broker (no network "
            "service inside a namespace): this test runs in the SQLite pass of .ci/run"
        )
    with contextlib.ExitStack() as stack:
        try:
            pair = stack.enter_context(veth_pair())
        except Unavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        cluster = Cluster(
            tmp_path,
            names=["a", "b"],
            netns={
                name: (namespace, address)
                for name, namespace, address in zip(
                    "ab", pair.namespaces, pair.addresses, strict=True
                )
            },
        )
        for started in run_cluster(cluster):
            yield started, pair


def _record(history: History, node: Node, key: str, text: str | None, *, secret: bool) -> Op:
    """Write (``text``) or delete (``None``) setting ``key`` on ``node`` through its CLI (a
    secret from standard input); the operation, stamped with the HLC ``node`` gave it, joins
    ``history``."""
    record: Key = (SETTING, key)
    before = set(own_versions(node, record))
    if text is None:
        node.cli("delete", key, check=True)
    else:
        flag = ["--sensitive"] if secret else ["--plain"]
        node.cli("set", key, "-", *flag, stdin=text, check=True)
    fresh = [hlc for hlc in own_versions(node, record) if hlc not in before]
    assert len(fresh) == 1, f"node {node.name}: {key} written, {len(fresh)} new own versions"
    value = None if text is None else ("S:" if secret else "P:") + text
    op = Op(node.name, SETTING, key, value, fresh[0])
    history.ops.append(op)
    return op


def _states(cluster: Cluster) -> dict[str, dict[Key, str]]:
    return {
        node.name: node_state(node, setting_prefix=SETTING_PREFIX, user_prefix=USER_PREFIX)
        for node in cluster
    }


def _converged(cluster: Cluster, expectation: Expectation) -> dict[str, dict[Key, str]]:
    """Every node's state when all are equal and as the model expects; empty otherwise."""
    states = _states(cluster)
    same = len(set(digests(states).values())) == 1
    return states if same and not any(expectation.check(s) for s in states.values()) else {}


def _peer_status(node: Node, peer: str) -> dict[str, object]:
    report = json.loads(node.cli("status", "--json", check=True).stdout)
    return next(p for p in report["peers"] if p["name"] == peer)


def _failing(node: Node, peer: str) -> dict[str, object]:
    """``peer``'s status on ``node`` when its last run failed; empty otherwise."""
    status = _peer_status(node, peer)
    return status if status["last_run_ok"] is False else {}


def test_a_cut_veth_link_partitions_the_nodes_and_they_converge_after(
    partitioned: tuple[Cluster, VethPair],
) -> None:
    cluster, pair = partitioned
    a, b = cluster["a"], cluster["b"]
    history = History(seed=0)
    shared, kept, doomed, secret = (f"{SETTING_PREFIX}{n}" for n in ("SHARED", "A", "DEL", "KEY"))
    try:
        _record(history, a, shared, "shared-0", secret=False)
        _record(history, a, kept, "from-a-0", secret=False)
        _record(history, a, doomed, "doomed-0", secret=False)
        _record(history, b, secret, "sk-CANARY-netns-0", secret=True)
        wait_until(
            lambda: _converged(cluster, history.expectation()),
            timeout=CONVERGE_TIMEOUT,
            what="both nodes synced before the cut",
        )
        history.note("synced; veth link down")

        pair.down(0)
        assert (pair.state(0), pair.state(1)) != ("UP", "UP")
        only_a, only_b = f"{SETTING_PREFIX}ONLY_A", f"{SETTING_PREFIX}ONLY_B"
        _record(history, a, shared, "from-a-1", secret=False)  # the same key on both sides
        _record(history, b, shared, "from-b-1", secret=False)
        _record(history, a, doomed, "updated-on-a", secret=False)  # updated here, deleted there
        _record(history, b, doomed, None, secret=False)
        _record(history, a, secret, None, secret=True)  # b's secret deleted on a
        _record(history, b, kept, "from-b-1", secret=False)
        _record(history, a, only_a, "sk-CANARY-netns-a", secret=True)
        _record(history, b, only_b, "plain-b", secret=False)

        status = wait_until(
            lambda: _failing(a, "b"),
            timeout=45,
            what="a's status shows peer b failing",
        )
        history.note(f"a sees b failing: {status.get('last_error')!r}")
        assert status["last_error"], status
        assert not b.config_exists(only_a) and not a.config_exists(only_b), "the cut leaked"

        pair.up(0)
        history.note("veth link up")
        expectation = history.expectation()
        found = wait_until(
            lambda: _converged(cluster, expectation),
            timeout=CONVERGE_TIMEOUT,
            what="both nodes converge after the link is back",
        )
        history.note(f"converged: {digests(found)}")
        assert found["a"] == found["b"]
        for name, state in found.items():
            assert expectation.check(state) == [], f"node {name}"
        assert (SETTING, only_a) in found["b"] and (SETTING, only_b) in found["a"]
        wait_until(
            lambda: _peer_status(a, "b")["last_run_ok"] is True,
            timeout=30,
            what="a's status shows peer b ok again",
        )
    except (AssertionError, TimeoutError) as exc:
        with contextlib.suppress(Exception):
            history.note(f"states at failure: {_states(cluster)}")
        raise AssertionError(f"{exc}\n{history.text()}") from exc
    print(history.text())
