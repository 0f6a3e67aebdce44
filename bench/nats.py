"""Fifty nodes on one NATS JetStream stream (``python -m bench nats``).

Prints, measured in one run on this machine (no assertions), with the machine's load average:

1. **write -> visible**: ``ROUNDS`` single writes, each on a random node (the write and its
   push cycle), then every other node follows until it holds the value; p50, p99 and the
   maximum over every (write, other node) pair, from the moment the write was asked for to the
   commit of the cycle that applied it on the other node; and where the time went (the
   followers' pulls, read ahead together, and their cycles, one after the other);
2. **convergence**: ``CHANGES`` random writes and deletes spread over every node, each pushed at
   once, nobody following meanwhile, then every node follows until all have read the whole
   stream: the time that took and whether all ``NODES`` digests are identical;
3. **cost**: the messages each node sent the server (its own counters, ``/connz``) during an
   idle period of ``IDLE_SECONDS`` (goal: 0) and for one change (the same for every reader,
   whatever the size of the fleet: O(1)).

Then records the goal rows (``bench._report.goal``): p99 under one second; identical digests;
zero messages per node while idle.

The nodes are ``tests.support.inprocess.InProcessNatsGroup``'s: in one process, each with a
database of its own (SQLite files in a temporary folder; PostgreSQL databases on
``TEST_DATABASE_URL``'s server when it is set), its own connection and durable consumer, one
stream on a private nats-server (``tests.support.nats_server``; ``/usr/sbin/nats-server``).
Fifty Django processes would not fit this 2-core machine; the nodes run one after the other, so
the figures are those of one core applying for fifty nodes, which fifty real processes share.
``BENCH_NATS_NODES``, ``BENCH_NATS_ROUNDS`` and ``BENCH_NATS_CHANGES`` override the sizes;
``BENCH_NATS_PREFETCH=0`` reads each follower's pull in its own cycle (the comparison of
docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NODES = int(os.environ.get("BENCH_NATS_NODES", "50"))
ROUNDS = int(os.environ.get("BENCH_NATS_ROUNDS", "20"))
CHANGES = int(os.environ.get("BENCH_NATS_CHANGES", "200"))
PREFETCH = os.environ.get("BENCH_NATS_PREFETCH", "1") != "0"
IDLE_SECONDS = 3.0
GOAL_P99_MS = 1000.0
SEED = 2016


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _sent(server: Any, names: list[str]) -> dict[str, int]:
    sent = server.sent_by()
    return {n: sent.get(f"configsync {n}", 0) + sent.get(f"configsync-bell {n}", 0) for n in names}


def _latency(group: Any, names: list[str], rng: random.Random) -> list[float]:
    samples: list[float] = []
    group.seconds.clear()
    for round_ in range(ROUNDS):
        writer = rng.choice(names)
        key = f"LATENCY_{round_}"
        for member in group.members.values():
            member.applied_at.clear()
        group.watched.clear()
        began = time.monotonic()
        group.write(writer, key, f"v{round_}")
        others = [group.members[n] for n in names if n != writer]
        deadline = began + 120
        while any(key not in m.applied_at for m in others):
            group.follow_once(wait=0.5)
            if time.monotonic() > deadline:
                raise RuntimeError(f"round {round_}: not visible everywhere in 120 s")
        samples += [(m.applied_at[key] - began) * 1000 for m in others]
        group.settle()  # the writer's own echo read too: the next round starts quiet
    return samples


def _converge(group: Any, names: list[str], rng: random.Random) -> tuple[float, bool, int]:
    live: dict[str, set[str]] = {n: set() for n in names}
    began = time.monotonic()
    for step in range(CHANGES):
        name = rng.choice(names)
        key = f"CONVERGE_{rng.randrange(40)}"
        if key in live[name] and rng.random() < 0.2:
            group.delete(name, key)
            live[name].discard(key)
        else:
            group.write(name, key, f"c{step}-{name}")
            live[name].add(key)
    group.watched.clear()
    cycles = group.settle(timeout=600)
    seconds = time.monotonic() - began
    digests = set(group.digests().values())
    return seconds, len(digests) == 1, cycles


def run() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS, connections

    from bench._report import goal
    from tests.support.inprocess import InProcessNatsGroup, NodeDatabases
    from tests.support.nats_server import NatsServer

    base = dict(connections.settings[DEFAULT_DB_ALIAS])
    backend = base["ENGINE"].rsplit(".", 1)[-1]
    load = os.getloadavg()
    print(
        f"{NODES} in-process nodes, one stream; database: {backend}; prefetch: {PREFETCH}; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; Python "
        f"{sys.version.split()[0]}",
        flush=True,
    )
    rng = random.Random(SEED)
    names = [f"n{i:02d}" for i in range(NODES)]
    directory = tempfile.mkdtemp(prefix="cs-bench-nats-")
    databases = NodeDatabases(base=base, directory=Path(directory), prefix="cs_bench_nats")
    del settings
    with NatsServer(name="bench", monitor=True) as server:
        group = InProcessNatsGroup(
            databases=databases,
            url=server.url,
            group=f"b{uuid.uuid4().hex[:10]}",
            prefetch=PREFETCH,
        )
        try:
            began = time.monotonic()
            for name in names:
                group.join(name)
            print(f"  {NODES} nodes joined in {time.monotonic() - began:.1f} s", flush=True)

            samples = _latency(group, names, rng)
            p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
            rounds = max(1, ROUNDS)
            print(
                f"write -> visible on the {NODES - 1} others ({ROUNDS} writes, {len(samples)} "
                f"samples): p50 {p50:,.0f} ms, p99 {p99:,.0f} ms, max {max(samples):,.0f} ms, "
                f"mean {statistics.fmean(samples):,.0f} ms",
                flush=True,
            )
            ahead_ms = group.seconds["prefetch"] / rounds * 1000
            cycles_ms = group.seconds["cycles"] / rounds * 1000
            print(
                f"  per write: followers' pulls read ahead {ahead_ms:,.0f} ms, their cycles "
                f"{cycles_ms:,.0f} ms ({cycles_ms / NODES:,.1f} ms per node)",
                flush=True,
            )

            idle_before = _sent(server, names)
            deadline = time.monotonic() + IDLE_SECONDS
            while time.monotonic() < deadline:
                group.follow_once(wait=0.1)
            idle = _sent(server, names)
            idle_cost = max(idle[n] - idle_before[n] for n in names)
            print(f"idle {IDLE_SECONDS:.0f} s: at most {idle_cost} messages per node", flush=True)

            start = _sent(server, names)
            group.write(names[0], "ONE_CHANGE", "x")
            group.settle()
            end = _sent(server, names)
            readers = sorted({end[n] - start[n] for n in names[1:]})
            print(
                f"one change: the writer sent {end[names[0]] - start[names[0]]} messages, each "
                f"reader {'/'.join(map(str, readers))}",
                flush=True,
            )

            seconds, same, cycles = _converge(group, names, rng)
            print(
                f"convergence: {CHANGES} random writes and deletes on {NODES} nodes, then "
                f"following: {seconds:.1f} s, {cycles} cycles; digests identical: {same}",
                flush=True,
            )
            load = os.getloadavg()
            print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)
        finally:
            group.close()
            databases.drop_all()
            import shutil

            shutil.rmtree(directory, ignore_errors=True)

    goal(
        area="nats",
        what=f"write visible on {NODES - 1} other nodes, p99 ({backend})",
        measured=f"{p99:,.0f} ms (p50 {p50:,.0f} ms)",
        target=f"< {GOAL_P99_MS:,.0f} ms",
        met=p99 < GOAL_P99_MS,
    )
    goal(
        area="nats",
        what=f"{NODES} nodes converge after {CHANGES} random writes/deletes ({backend})",
        measured=f"identical digests: {same} ({seconds:.1f} s)",
        target="identical digests",
        met=same,
    )
    goal(
        area="nats",
        what="messages per node in an idle period",
        measured=str(idle_cost),
        target="0",
        met=idle_cost == 0,
    )


@contextlib.contextmanager
def _database() -> Iterator[str]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
    else:
        with tempfile.TemporaryDirectory(prefix="cs-bench-nats-") as directory:
            yield f"sqlite:///{directory}/bench.sqlite3"


def main() -> None:
    with _database() as url:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench._settings", "BENCH_DATABASE_URL": url}
        subprocess.run([sys.executable, "-m", "bench.nats"], env=env, check=True)


if __name__ == "__main__":
    if os.environ.get("DJANGO_SETTINGS_MODULE") == "bench._settings":
        run()
    else:
        main()
