"""Running a harness cluster from a pytest fixture (see the ``multinode`` package)."""

from __future__ import annotations

from collections.abc import Iterator

from multinode import Cluster

live_clusters: list[Cluster] = []
"""The clusters started by :func:`run_cluster` and not yet destroyed, in this process."""


def run_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """Start ``cluster``, yield it, and always destroy it; its logs join a failing test's report.

    For module fixtures: ``yield from run_cluster(Cluster(...))``. Per-node settings go in the
    cluster's ``node_env`` (or ``cluster[name].env``) before this starts it.
    """
    live_clusters.append(cluster)
    try:
        cluster.start()
        yield cluster
    finally:
        live_clusters.remove(cluster)
        cluster.destroy()
