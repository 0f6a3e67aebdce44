"""``/api/v1/health?strict=1`` with a real worker and beat: 200 while they run, 503 once the
worker has not been seen for two intervals, 200 again once it is back.

One node (web, and a Celery worker with embedded beat, interval 2 s) from the harness; the
worker is frozen with SIGSTOP (its embedded beat, a child process, keeps sending), then thawed;
then worker and beat are stopped outright and started again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from multinode import Cluster, wait_until
from tests.support.multinode import run_cluster

pytestmark = pytest.mark.multinode

INTERVAL = 2


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from run_cluster(
        Cluster(tmp_path_factory.mktemp("cluster"), names=["a"], links=[], interval=INTERVAL)
    )


def strict_health(cluster: Cluster) -> tuple[int, dict[str, Any]]:
    response = requests.get(f"{cluster['a'].base_url}/api/v1/health?strict=1", timeout=15)
    return response.status_code, response.json()


def fresh(cluster: Cluster) -> dict[str, Any] | None:
    code, body = strict_health(cluster)
    return body if code == 200 and body["status"] == "ok" else None


def worker_stale_beat_fresh(cluster: Cluster) -> dict[str, Any] | None:
    code, body = strict_health(cluster)
    worker, beat = body["components"]["worker"], body["components"]["beat"]
    return body if code == 503 and not worker["ok"] and beat["ok"] else None


def test_strict_health_follows_the_worker(node_cluster: Cluster) -> None:
    node = node_cluster["a"]
    body = wait_until(lambda: fresh(node_cluster), timeout=60, what="worker and beat heartbeats")
    assert body["components"]["worker"]["max_age_seconds"] == 2 * INTERVAL
    assert body["components"]["beat"]["age_seconds"] is not None

    worker = node.processes["celery"]
    os.kill(worker.pid, signal.SIGSTOP)  # the worker only: its embedded beat keeps sending
    try:
        stale = wait_until(
            lambda: worker_stale_beat_fresh(node_cluster), timeout=60, what="a stale worker"
        )
        assert stale["status"] == "error"
        assert stale["components"]["worker"]["age_seconds"] >= 2 * INTERVAL  # rounded to 0.1 s
        plain = requests.get(f"{node.base_url}/api/v1/health", timeout=15)
        assert plain.status_code == 200 and plain.json()["status"] == "degraded"
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_until(lambda: fresh(node_cluster), timeout=60, what="the worker back")


def test_strict_health_is_503_with_worker_and_beat_stopped_and_200_once_restarted(
    node_cluster: Cluster,
) -> None:
    node = node_cluster["a"]
    wait_until(lambda: fresh(node_cluster), timeout=60, what="worker and beat heartbeats")
    node.stop("celery")

    def both_stale() -> dict[str, Any] | None:
        code, body = strict_health(node_cluster)
        seen = [body["components"][role]["ok"] for role in ("worker", "beat")]
        return body if code == 503 and not any(seen) else None

    body = wait_until(both_stale, timeout=60, what="stale worker and beat")
    assert body["components"]["database"]["ok"] and body["components"]["broker"]["ok"]
    node.start_celery()
    wait_until(lambda: fresh(node_cluster), timeout=90, what="worker and beat back")
