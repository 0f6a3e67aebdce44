"""Faults between two real nodes: a peer down then back, a node killed mid-cycle."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from multinode import Cluster, unique_key, wait_until
from tests.support.multinode import run_cluster

pytestmark = [pytest.mark.multinode, pytest.mark.chaos]

CONVERGE = 120.0
# Pages of PAGE changes (CONFIGSYNC_SYNC_BATCH_SIZE on both nodes): BULK records take several
# pages each way, so b is killed with some applied and the rest still to come.
BULK = 400
PAGE = 10


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Nodes ``a`` and ``b`` as the package's fixture makes them, moving ``PAGE`` changes a page."""
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster"),
        names=["a", "b"],
        extra_env={"CONFIGSYNC_SYNC_BATCH_SIZE": str(PAGE)},
    )
    yield from run_cluster(cluster)


def _peer(node_status: dict[str, object], name: str) -> dict[str, object]:
    peers = node_status["peers"]
    assert isinstance(peers, list)
    return next(p for p in peers if p["name"] == name)


def test_peer_down_then_back(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    key = unique_key("DOWN")

    b.stop()  # web, worker and beat of b are gone: a's cycles with b fail
    try:
        a.cli("set", key, "while-b-was-down", check=True)

        def failing() -> dict[str, object] | None:
            peer = _peer(a.sync_status(), "b")
            return peer if peer["last_error"] and peer["last_run_ok"] is False else None

        peer = wait_until(failing, timeout=CONVERGE, what="a reports b failing")
        assert peer["changes_behind"] >= 1
        # The failure of one peer does not take the node down.
        assert a.get("/api/v1/health").status_code == 200
    finally:
        b.start()

    wait_until(
        lambda: b.config_value(key) == "while-b-was-down", timeout=CONVERGE, what="b catches up"
    )

    def recovered() -> bool:
        peer = _peer(a.sync_status(), "b")
        return bool(
            peer["last_run_ok"]
            and peer["last_success_at"]
            and peer["last_error_at"]
            and peer["last_success_at"] > peer["last_error_at"]
        )

    wait_until(recovered, timeout=CONVERGE, what="a reports b recovered")


def test_node_killed_mid_cycle_resumes_without_loss(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    prefix = unique_key("BULK")
    # One transaction of BULK writes on a: push on write and the beat start streaming them to b.
    a.shell(
        "from django.db import transaction\n"
        "from configsync.services.system_config import system_config_set\n"
        "with transaction.atomic():\n"
        f"    for i in range({BULK}):\n"
        f"        system_config_set(key='{prefix}_%05d' % i, value='v%d' % i)\n"
    )

    def count_on_b() -> int:
        rows = b.sql(
            "SELECT COUNT(*) FROM configsync_systemconfig WHERE key LIKE %s", [f"{prefix}_%"]
        )
        return int(rows[0][0])

    # Kill every process of b (SIGKILL, no clean-up) as soon as the first records land.
    wait_until(lambda: count_on_b() > 0, timeout=CONVERGE, interval=0.02, what="sync started")
    b.kill(signal.SIGKILL)
    partial = count_on_b()
    assert 0 < partial <= BULK
    print(f"b held {partial} of {BULK} records when it was killed")

    b.start()
    wait_until(lambda: count_on_b() == BULK, timeout=CONVERGE, what="b completes after restart")

    query = (
        "SELECT s.key, s.value, r.hlc FROM configsync_systemconfig s "
        "JOIN configsync_replicatedrecord r ON r.natural_key = s.key "
        "AND r.model_label = 'configsync.systemconfig' WHERE s.key LIKE %s ORDER BY s.key"
    )
    on_a = a.sql(query, [f"{prefix}_%"])
    on_b = b.sql(query, [f"{prefix}_%"])
    assert len(on_a) == BULK
    # Same records, same values and the same versions: nothing lost, nothing applied twice.
    assert on_b == on_a
    conflicts = b.sql(
        "SELECT COUNT(*) FROM configsync_conflict WHERE natural_key LIKE %s", [f"{prefix}_%"]
    )
    assert conflicts[0][0] == 0
