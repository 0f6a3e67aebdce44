"""The Procfile's pair of workers on real nodes: a write's push runs in the pusher.

``Cluster(pusher=True)`` starts each node as the Procfile does: a worker of the default queue
(with beat) and a pusher of the ``push`` queue (solo pool). A write on ``a`` reaches ``b`` by a
push-only cycle that the pusher ran and the worker did not; the pusher runs nothing else (the
start-up sync and heartbeat stay with the worker). The beat is slow (60 s) so that it carries
nothing in the test's window.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from multinode import Cluster, unique_key, wait_until
from tests.support.multinode import run_cluster

pytestmark = pytest.mark.multinode


@pytest.fixture(scope="module")
def pushing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster"), names=["a", "b"], interval=60, pusher=True
    )
    yield from run_cluster(cluster)


def test_a_write_reaches_the_peer_through_the_pusher_alone(pushing: Cluster) -> None:
    a, b = pushing["a"], pushing["b"]
    # Both start-up cycles (the workers') have run: the peers know each other, and b's cannot
    # pull the write below before a's pusher pushes it (the push would then find it stale).
    for node, peer in ((a, "b"), (b, "a")):
        wait_until(
            lambda node=node, peer=peer: (
                f"sync (full) with peer {peer} done" in node.log_path("celery").read_text()
            ),
            timeout=90,
        )
    key = unique_key("PUSHER")
    a.shell(
        "from configsync.services.system_config import system_config_set\n"
        f"system_config_set(key={key!r}, value='through-the-pusher')\n"
    )
    wait_until(lambda: b.config_value(key) == "through-the-pusher", timeout=60)
    done = "sync (push) with peer b done: pulled 0, pushed 1"  # logged once b has answered
    wait_until(lambda: done in a.log_path("pusher").read_text(), timeout=60)
    pusher_log = a.log_path("pusher").read_text()
    worker_log = a.log_path("celery").read_text()
    assert "sync (push) with peer" not in worker_log
    # (the worker's banner lists every task it knows: a task it ran is logged with its id)
    assert "tasks.sync_all_peers[" not in pusher_log and "tasks.heartbeat[" not in pusher_log
    assert pushing["a"].alive("pusher") and pushing["b"].alive("pusher")
