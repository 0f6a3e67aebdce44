"""Fixtures of the multi-node tests: clusters of real node processes (the ``multinode`` package).

Clusters are module-scoped (one start-up per test module) and always stopped on teardown. When a
test fails, the tail of every live node's logs is printed with its report. Under pytest-xdist,
run them with ``--dist loadfile`` (as ``make test`` does), so that a module's tests share one
worker and so one cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from multinode import Cluster
from tests.support.multinode import live_clusters, run_cluster
from tests.support.xdist import multinode_shortfall


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed and live_clusters:
        report.sections.append(
            ("multinode logs", "\n".join(cluster.logs_tail() for cluster in live_clusters))
        )
    return report


@pytest.fixture(scope="module", autouse=True)
def _enough_redis_dbs() -> None:
    """Under pytest-xdist each worker's clusters take their own slice of ``MULTINODE_REDIS_DBS``
    and their own database names (``tests.support.xdist``): fail early when a slice is short."""
    if shortfall := multinode_shortfall():
        pytest.fail(shortfall)


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
