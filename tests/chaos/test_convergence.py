"""Convergence under faults: real nodes over every transport, a seeded fault schedule, a model.

One cluster for the module (:func:`tests.chaos.harness.chaos_world`); each seed runs rounds of
random writes and deletes on every node under link faults, storage outages, kills, clock skew,
replayed push batches and forced HLC ties, then heals, and every node must hold the model's
state. A failure prints the seed, the history and ``CHAOS_SEED=<seed> make chaos``.

In ``make test`` (multi-node pass) it runs the short configuration below; ``make chaos`` sets
``CHAOS_SEED``, ``CHAOS_ROUNDS`` and ``CHAOS_NODES`` (README) for a long one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from configsync.conf import DEFAULTS
from multinode import wait_until
from multinode.cluster import redis_db_list
from tests.chaos.faults import World, force_tie
from tests.chaos.harness import ChaosFailure, Config, chaos_world, converge, run_seed
from tests.chaos.workload import Workload
from tests.support.multinode import last_run_id, sync_runs

pytestmark = [pytest.mark.multinode, pytest.mark.chaos, pytest.mark.timeout(900)]

# One seed per backend in `make test` (CI's two passes run both); `make chaos` runs many.
CONFIG = Config.from_env(
    seeds=(1515,) if os.environ.get("TEST_DATABASE_URL") else (2026,), rounds=2, nodes=3
)
BROKEN_SEED = 4242


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
    print(workload.history.text())
    ops = workload.history.ops
    assert any(op.value is None and op.accepted for op in ops), "no delete was made"
    assert {op.node for op in ops} == set(world.nodes)


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
        world.proxy.set("a>b", cut=False, block_push=True)
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
