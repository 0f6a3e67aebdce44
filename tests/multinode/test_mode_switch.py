"""A deployment-mode switch under a running worker and beat changes what the next cycle does.

Nodes ``a`` and ``b`` are HTTP peers of each other and share a bucket on a real moto server.
``b`` stays in ``LOCAL_R2`` (it reads only the bucket and never pulls from ``a`` over HTTP), so
whatever of ``a``'s reaches ``b`` got there the way ``a``'s current mode sends it. ``a`` starts
in ``LOCAL_ONLY`` and is switched with ``configsync mode set`` while its processes run, never
restarted: ``LOCAL_ONLY`` (nothing leaves ``a``) → ``LOCAL_R2`` (through the bucket, runs with
peer ``r2`` only) → ``LOCAL_EXTERNAL`` (over HTTP, runs with peer ``b`` only). The tests run in
order on one cluster: each starts from the mode the previous one left.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from multinode import Cluster, unique_key, wait_until
from multinode.cluster import Node
from multinode.media import s3_server
from tests.support.multinode import (
    Medium,
    last_run_id,
    received_from,
    run_cluster,
    sync_runs,
    wait_cycles,
)

pytestmark = pytest.mark.multinode

CONVERGE = 120.0
SYSTEM_CONFIG = "configsync.systemconfig"


@pytest.fixture(scope="module")
def modes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Medium]]:
    """``a`` (``LOCAL_ONLY``) and ``b`` (``LOCAL_R2``): HTTP peers sharing one bucket; beat 2 s."""
    root = tmp_path_factory.mktemp("modes")
    with s3_server(log=root / "moto.log") as server:
        bucket = server.create_bucket()
        cluster = Cluster(
            root,
            names=["a", "b"],
            links=[("a", "b")],
            extra_env=server.env(bucket),
            node_env={
                "a": {"CONFIGSYNC_DEPLOYMENT_MODE": "LOCAL_ONLY"},
                "b": {"CONFIGSYNC_DEPLOYMENT_MODE": "LOCAL_R2"},
            },
        )
        for world in run_cluster(cluster):
            yield world, Medium(server, bucket)


def mode_of(node: Node) -> str:
    return str(json.loads(node.cli("mode", "show", "--json", check=True).stdout)["mode"])


def test_in_local_only_nothing_leaves_a(modes: tuple[Cluster, Medium]) -> None:
    cluster, medium = modes
    a, b = cluster["a"], cluster["b"]
    assert mode_of(a) == "LOCAL_ONLY" and mode_of(b) == "LOCAL_R2"

    key = unique_key("MODE_LOCAL_ONLY")
    a.cli("set", key, "stays-on-a", check=True)
    # b reads the bucket twice after the write, and a's beat runs meanwhile (every 2 s).
    wait_cycles(b, "r2", after=last_run_id(b), count=2, timeout=CONVERGE)
    assert not b.config_exists(key)
    assert not medium.holding(key)
    assert sync_runs(a) == [], "a ran no cycle at all in LOCAL_ONLY"
    assert not any(run.peer == "a" for run in sync_runs(b)), "b never syncs with a over HTTP"


def test_switched_to_local_r2_a_writes_reach_b_through_the_bucket(
    modes: tuple[Cluster, Medium],
) -> None:
    cluster, medium = modes
    a, b = cluster["a"], cluster["b"]
    switched = a.cli("mode", "set", "LOCAL_R2", check=True)
    assert "LOCAL_R2" in switched.stdout
    assert mode_of(a) == "LOCAL_R2"
    # The running beat follows the switch by itself: a cycles with the bucket, nothing written.
    wait_cycles(a, "r2", after=last_run_id(a), count=1, timeout=CONVERGE)

    before = last_run_id(a)
    key = unique_key("MODE_R2")
    a.cli("set", key, "through-the-bucket", check=True)
    wait_until(lambda: b.config_value(key) == "through-the-bucket", timeout=CONVERGE, what="a -> b")
    assert (received_from(b, SYSTEM_CONFIG, key) or "").startswith("bucket.")
    assert medium.holding(key)

    runs = sync_runs(a, after=before)
    assert runs and {run.peer for run in runs} == {"r2"}, runs
    assert any(run.pushed > 0 for run in runs), runs


def test_switched_to_local_external_a_writes_go_over_http(modes: tuple[Cluster, Medium]) -> None:
    cluster, medium = modes
    a, b = cluster["a"], cluster["b"]
    a.cli("mode", "set", "LOCAL_EXTERNAL", check=True)
    assert mode_of(a) == "LOCAL_EXTERNAL"
    wait_cycles(a, "b", after=last_run_id(a), count=1, timeout=CONVERGE)

    before = last_run_id(a)
    key = unique_key("MODE_HTTP")
    a.cli("set", key, "over-http", check=True)
    wait_until(lambda: b.config_value(key) == "over-http", timeout=CONVERGE, what="a -> b")
    assert received_from(b, SYSTEM_CONFIG, key) == a.node_id  # pushed by a itself, over HTTP

    wait_cycles(a, "b", after=before, count=2, timeout=CONVERGE)
    runs = sync_runs(a, after=before)
    assert {run.peer for run in runs} == {"b"}, runs
    # a writes nothing to the bucket now; b (LOCAL_R2) relays what it received over HTTP there,
    # as its own writer.
    holders = sorted(medium.holding(key))
    assert not [name for name in holders if f"/{a.node_id}/" in name], holders


def test_an_unknown_mode_is_refused_and_the_current_one_kept(
    modes: tuple[Cluster, Medium],
) -> None:
    a = modes[0]["a"]
    refused = a.cli("mode", "set", "LOCAL_EVERYWHERE")
    assert refused.returncode == 1
    assert "LOCAL_EVERYWHERE" in refused.stderr
    assert mode_of(a) == "LOCAL_EXTERNAL"
