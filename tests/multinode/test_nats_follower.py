"""The NATS follower as the Procfile runs it, on real nodes: processes of their own, each node
its own database, one private nats-server, no HTTP peer between them.

A write on ``a`` reaches ``b`` through the stream (the beat's interval is 60 s); then ``b``'s
follower and worker are killed with SIGKILL, ``a`` writes while ``b`` is away, and ``b``'s
restarted follower catches up from its durable consumer: every change once, its lag back to
zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from multinode import Cluster, Node, unique_key, wait_until
from tests.support.multinode import run_cluster
from tests.support.nats_server import NatsServer

pytestmark = pytest.mark.multinode


@pytest.fixture(scope="module")
def nats_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with NatsServer() as server:
        server.start()
        cluster = Cluster(
            tmp_path_factory.mktemp("cluster"),
            names=["a", "b"],
            links=[],
            interval=60,
            extra_env={"CONFIGSYNC_NATS_URL": server.url},
        )
        for started in run_cluster(cluster):  # migrated and running: now the followers
            for node in started:
                node.start_nats_follower()
            yield started


def _write(node: Node, key: str, value: str) -> None:
    node.shell(
        "from configsync.services.system_config import system_config_set\n"
        f"system_config_set(key={key!r}, value={value!r})\n"
    )


def _status(node: Node) -> dict[str, Any]:
    """``configsync nats status --json`` on ``node`` (the server's view of its consumer: it
    answers with the node's follower down too)."""
    answer = node.cli("nats", "status", "--json")
    assert answer.returncode == 0, answer.stderr
    status: dict[str, Any] = json.loads(answer.stdout)
    assert status["reachable"], status
    return status


def test_a_write_reaches_the_other_node_through_the_stream_and_its_follower(
    nats_nodes: Cluster,
) -> None:
    a, b = nats_nodes["a"], nats_nodes["b"]
    assert a.sync_status() is not None
    key = unique_key("NATS_FOLLOW")
    _write(a, key, "through-the-stream")
    # (b's worker may carry it too, with its start-up cycle: the next test leaves b nothing
    # but its follower)
    wait_until(lambda: b.config_value(key) == "through-the-stream", timeout=45)
    assert b.alive("nats") and a.alive("nats")


def test_a_killed_follower_catches_up_from_its_durable_cursor(nats_nodes: Cluster) -> None:
    a, b = nats_nodes["a"], nats_nodes["b"]
    b.kill(9, "nats", "celery")  # nothing on b reads the stream while it is away
    published = _status(b)["stream_last_seq"]
    keys = [unique_key("NATS_AWAY") for _ in range(5)]
    for index, key in enumerate(keys):
        _write(a, key, f"written-while-b-was-away-{index}")
    # a's pushes are on the stream (a message per change), unread by b's durable consumer
    wait_until(lambda: _status(b)["stream_last_seq"] >= published + len(keys), timeout=45)
    assert _status(b)["lag"] >= len(keys)
    assert not any(b.config_exists(key) for key in keys)

    logged = len(b.log_path("nats").read_text())
    b.start_nats_follower()
    wait_until(lambda: all(b.config_exists(key) for key in keys), timeout=60)
    assert [b.config_value(key) for key in keys] == [
        f"written-while-b-was-away-{index}" for index in range(len(keys))
    ]
    wait_until(lambda: _status(b)["lag"] == 0, timeout=30)
    # the restarted follower carried them (b's worker is down)
    assert "sync run peer=nats" in b.log_path("nats").read_text()[logged:]
    # each change applied once: one history version per key on b
    for key in keys:
        rows = b.sql("SELECT count(*) FROM configsync_recordversion WHERE natural_key = %s", [key])
        assert rows == [(1,)], (key, rows)
