"""The suite under pytest-xdist: the same collection in every worker, no state shared."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.support.xdist import isolate_multinode, multinode_shortfall, worker_redis_url

# Collection and the per-worker environment, no database: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass


def _collect(hash_seed: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["PYTHONHASHSEED"] = hash_seed
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ids(process: subprocess.Popen[str]) -> list[str]:
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, out[-2000:] + err[-2000:]
    return [line for line in out.splitlines() if "::" in line]


def test_every_process_collects_the_same_test_ids() -> None:
    """xdist refuses to run when its workers collect different ids: no id may come from a
    random value, a set's order, an object's repr or the time."""
    first, second = _collect("1"), _collect("2")
    first_ids, second_ids = _ids(first), _ids(second)
    assert len(first_ids) > 100
    assert first_ids == second_ids


def test_each_worker_gets_its_own_redis_db(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_REDIS_DBS", raising=False)
    assert worker_redis_url("redis://127.0.0.1:6379/1", 0) == "redis://127.0.0.1:6379/1"
    assert worker_redis_url("redis://127.0.0.1:6379/1", 1) == "redis://127.0.0.1:6379/2"
    assert worker_redis_url("redis://:pw@h:6379", 2) == "redis://:pw@h:6379/2"


def test_listed_redis_dbs_are_taken_in_worker_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REDIS_DBS", "7, 9")
    assert worker_redis_url("redis://h:6379/1", 0) == "redis://h:6379/7"
    assert worker_redis_url("redis://h:6379/1", 1) == "redis://h:6379/9"
    with pytest.raises(RuntimeError, match="TEST_REDIS_DBS names 2 Redis DB"):
        worker_redis_url("redis://h:6379/1", 2)


def test_each_worker_gets_its_own_node_databases_and_slice_of_node_redis_dbs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MULTINODE_REDIS_DBS", "4,5,6,7,8,9,10,11,12,13,14,15")
    monkeypatch.setenv("TEST_DATABASE_URL", "postgres://postgres@h:5432/configsync")
    monkeypatch.delenv("MULTINODE_DB_PREFIX", raising=False)
    isolate_multinode(1, 4)
    assert os.environ["MULTINODE_REDIS_DBS"] == "7,8,9"
    assert os.environ["MULTINODE_DB_PREFIX"] == "configsync_gw1"
    monkeypatch.setenv("MULTINODE_DB_PREFIX", "mine")
    isolate_multinode(0, 4)
    assert os.environ["MULTINODE_DB_PREFIX"] == "mine_gw0"


def test_a_worker_short_of_node_redis_dbs_is_told_how_many_to_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://h:6379/0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    monkeypatch.setenv("MULTINODE_REDIS_DBS", "10,11")
    assert "with 4 workers, list 12 DBs or more in MULTINODE_REDIS_DBS" in multinode_shortfall()
    monkeypatch.setenv("MULTINODE_REDIS_DBS", "10,11,12")
    assert multinode_shortfall() == ""
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("MULTINODE_REDIS_DBS", "10")
    assert multinode_shortfall() == ""  # without Redis the nodes need no Redis DB


def test_a_chaos_run_of_five_nodes_needs_five_redis_dbs_per_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://h:6379/0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("MULTINODE_REDIS_DBS", "10,11,12")
    monkeypatch.setenv("CHAOS_NODES", "5")
    assert "with 2 workers, list 10 DBs or more in MULTINODE_REDIS_DBS" in multinode_shortfall()
    monkeypatch.setenv("MULTINODE_REDIS_DBS", "10,11,12,13,14")
    assert multinode_shortfall() == ""
    monkeypatch.setenv("CHAOS_NODES", "2")  # never fewer than the three of tests/multinode
    monkeypatch.setenv("MULTINODE_REDIS_DBS", "10,11")
    assert "list 6 DBs" in multinode_shortfall()
