"""Fixtures of the multi-node tests: clusters of real node processes (the ``multinode`` package).

Clusters are module-scoped (one start-up per test module) and always stopped on teardown. When a
test fails, the tail of every live node's logs is printed with its report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from multinode import Cluster
from tests.support.multinode import live_clusters, run_cluster


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed and live_clusters:
        report.sections.append(
            ("multinode logs", "\n".join(cluster.logs_tail() for cluster in live_clusters))
        )
    return report


@pytest.fixture(scope="module", autouse=True)
def _one_cluster_at_a_time() -> None:
    """Clusters share the PostgreSQL server's node databases and ``MULTINODE_REDIS_DBS``: two
    pytest-xdist workers would start clusters over each other, so under ``-n`` these skip."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        pytest.skip("multi-node tests run one cluster at a time: run them without -n")


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Nodes ``a`` and ``b``, peers of each other, beat every 2 s."""
    yield from run_cluster(Cluster(tmp_path_factory.mktemp("cluster"), names=["a", "b"]))


@pytest.fixture(scope="module")
def three_nodes_line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Nodes ``a - b - c`` in a line: ``a`` and ``c`` only ever talk to ``b``."""
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster"), names=["a", "b", "c"], links=[("a", "b"), ("b", "c")]
    )
    yield from run_cluster(cluster)
