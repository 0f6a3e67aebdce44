"""Convergence under faults: real nodes over every transport, a seeded fault schedule, a model.

One cluster for the module (:func:`tests.chaos.harness.chaos_world`: each node in a network
namespace of its own where it can be, partitions then real veth cuts); each seed runs rounds of
random writes and deletes on every node under link faults, storage outages, kills, clock skew,
lost acknowledgements of committed writes, replayed push batches and forced HLC ties, puts one
clock beyond the tolerated skew (its writes held by peers, then applied), then heals, and every
node must hold the model's state. A failure prints the seed, the history and
``CHAOS_SEED=<seed> make chaos``. Two tests prove the harness can fail: a broken merge rule, and
a committed write (its acknowledgement lost) that the node then loses.

In ``make test`` (multi-node pass) it runs the short configuration below; ``make chaos`` sets
``CHAOS_SEED``, ``CHAOS_ROUNDS`` and ``CHAOS_NODES`` (README) for a long one.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from configsync.conf import DEFAULTS
from multinode import Node, wait_until
from multinode.cluster import redis_db_list
from multinode.media import database_text
from tests.chaos.faults import World, force_tie
from tests.chaos.harness import ChaosFailure, Config, chaos_world, converge, run_seed
from tests.chaos.workload import SETTING, Workload
from tests.support.multinode import last_run_id, sync_runs

pytestmark = [pytest.mark.multinode, pytest.mark.chaos, pytest.mark.timeout(900)]

# One seed per backend in `make test` (CI's two passes run both); `make chaos` runs many.
CONFIG = Config.from_env(
    seeds=(1515,) if os.environ.get("TEST_DATABASE_URL") else (2026,),
    rounds=2,
    nodes=3,
    skew_beyond=(1515,),  # about 20 s: one pass of .ci/run puts a clock beyond tolerance
)
BROKEN_SEED = 4242
LOST_SEED = 4343


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if os.environ.get("REDIS_URL") and len(redis_db_list()) < CONFIG.nodes:
        pytest.fail(
            f"CHAOS_NODES={CONFIG.nodes} needs as many Redis DBs in this worker's share of "
            f"MULTINODE_REDIS_DBS ({','.join(redis_db_list())})"
        )
    with chaos_world(tmp_path_factory.mktemp("chaos"), nodes=CONFIG.nodes) as started:
        yield started


@pytest.mark.parametrize("seed", CONFIG.seeds)
def test_nodes_converge_to_the_model(world: World, seed: int) -> None:
    workload = run_seed(world, seed=seed, config=CONFIG)
    text = workload.history.text()
    print(text)
    ops = workload.history.ops
    assert any(op.value is None and op.accepted for op in ops), "no delete was made"
    assert {op.node for op in ops} == set(world.nodes)
    if CONFIG.skews_beyond(seed):
        assert any(op.held_for_skew for op in ops), "no write was held for clock skew\n" + text
    if world.mesh is not None and "link" in text:
        assert "(proxy)" not in text, "a partition was the proxy's, not a veth's"


def test_a_broken_merge_rule_fails_the_harness_with_its_seed(world: World) -> None:
    """One node resolving HLC ties the wrong way (``CONFIGSYNC_TEST_MERGE_RULE=broken``) must
    make the harness fail, naming the seed."""
    if "TEST_MERGE_RULE" not in DEFAULTS:
        pytest.skip("merge-rule switch not present")
    node = world.cluster["a"]
    node.env["CONFIGSYNC_TEST_MERGE_RULE"] = "broken"
    world.restart("a")
    try:
        workload = Workload(world.nodes, seed=BROKEN_SEED)
        note = workload.history.note
        # Node c far ahead writes once: a and b take its clock and lag it, so they can tie.
        world.restart("c", offset_ms=300_000)
        workload.step("c", filler=True)
        world.heal()  # c's clock back; a and b take c's timestamp and lag it from now on
        converge(world, workload)
        tie = force_tie(world, workload.step, note, pair=("a", "b"), prefix=workload.setting_prefix)
        assert tie, "could not force a tie:\n" + workload.history.text()
        # a (the broken node) takes b's tied version first: it pulls from b, pushes nothing.
        after = last_run_id(node)
        # Pushes blocked before the link is back: a push of a's tied version sent while the
        # veth was down is retransmitted once it is up, and must not reach b first (b would
        # decide the conflict, and a take b's merge without ever applying its broken rule).
        world.proxy.set("a>b", block_push=True)
        world.cut("a>b", False)
        note("link a>b: pull only")
        wait_until(
            lambda: any(
                run.finished and run.pulled for run in sync_runs(node, after=after, peer="b")
            ),
            timeout=120,
            what="a pulls b's tied version",
        )
        world.heal()
        with pytest.raises(ChaosFailure) as failure:
            converge(world, workload)
        assert f"seed {BROKEN_SEED}" in str(failure.value)
        assert f"CHAOS_SEED={BROKEN_SEED} make chaos" in str(failure.value)
        print(failure.value)
    finally:
        del node.env["CONFIGSYNC_TEST_MERGE_RULE"]
        world.restart("a")
        world.heal()


def _lose(node: Node, key: str) -> None:
    """``node`` loses setting ``key`` behind the product's back: its row, its place in the change
    feed and its history go, leaving no tombstone (what a node that answered 2xx and then did
    not keep the write would show)."""
    node.shell(
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        f"    cursor.execute('DELETE FROM configsync_systemconfig WHERE key = %s', [{key!r}])\n"
        "    for table in ('configsync_replicatedrecord', 'configsync_recordversion'):\n"
        "        cursor.execute(f'DELETE FROM {table} WHERE model_label = %s'\n"
        f"                       ' AND natural_key = %s', [{SETTING!r}, {key!r}])\n"
    )


def test_a_lost_committed_write_fails_the_harness_with_its_seed(world: World) -> None:
    """A write whose 2xx the client link withheld is committed: the model requires it. One that
    the nodes keep (no problem may name it), then one its node loses while cut off: the run must
    fail, naming the seed, where a model treating it as unknown would have passed."""
    workload = Workload(world.nodes, seed=LOST_SEED, clients=world.client_links())
    note, client = workload.history.note, world.clients["a"]
    kept, lost = (f"{workload.setting_prefix}{name}" for name in ("KEPT", "LOST"))
    try:
        world.proxy.set(client, lose_ack=True)
        op = workload.step("a", key=kept, delete=False)
        assert op.committed and not op.acked and op.hlc, workload.history.text()
        world.proxy.set(client, lose_ack=False)

        # Cut off, and nothing in flight: a veth cut only stalls an open connection (a push
        # that read the write would arrive once the link is up), so the proxy resets them too.
        for link in [*world.http_links, *world.media_links["database"]]:
            if link.startswith("a>") or link.endswith(">a") or link.endswith("@a"):
                world.cut(link)
                world.proxy.set(link, cut=True)
        # and no sync cycle of a's may read the write before its loss (one in memory would
        # deliver it later): a's worker is down meanwhile.
        world.cluster["a"].kill(signal.SIGKILL, "celery")
        note("node a cut off from its peers and the external database, its worker killed")
        world.proxy.set(client, lose_ack=True)
        op = workload.step("a", key=lost, delete=False)
        world.proxy.set(client, lose_ack=False)
        assert op.committed and not op.acked and op.hlc, workload.history.text()
        _lose(world.cluster["a"], lost)
        note(f"node a lost {lost} (committed at {op.hlc}, its 2xx withheld)")
        holding = [node.name for node in world.cluster if node.config_exists(lost)]
        if lost in str(database_text(world.external_database)):
            holding.append("the external database")
        assert holding == [], f"{lost} left node a before the loss: {holding}"
        world.cluster["a"].start_celery()
        world.heal()
        with pytest.raises(ChaosFailure) as failure:
            converge(world, workload)
        report = str(failure.value)
        assert f"seed {LOST_SEED}" in report and f"CHAOS_SEED={LOST_SEED} make chaos" in report
        assert f"expected {op.value!r}, node has None" in report
        assert kept not in report.split("re-run it:")[0], report
        print(report)
    finally:
        world.proxy.set(client, lose_ack=False)
        world.heal()
