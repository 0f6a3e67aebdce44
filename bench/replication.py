"""Replication figures between real node processes (``python -m bench replication``).

Prints, measured in one run on this machine (no assertions):

1. records per second of a first sync of 10,000 records (a fresh node pulling everything);
2. the cost of an idle cycle (nothing to exchange) at 1,000 and at 100,000 records, and their
   ratio (it should stay near 1: the feed is read by an index on ``seq``, not scanned);
3. the time from a write on one node to its visibility on the other, with push on write and
   without it (the periodic beat only).

Nodes are started with the multi-node harness (the ``multinode`` package at the repository
root): separate processes and databases, real HTTP, a real Celery worker and beat. Backends
follow the environment like the tests: PostgreSQL when ``TEST_DATABASE_URL`` is set (one
database per node), Redis when ``REDIS_URL`` is set (``MULTINODE_REDIS_DBS``), else SQLite and
the filesystem broker. ``BENCH_LARGE`` overrides the 100,000 records of the large idle measurement.

Records are seeded with :func:`seed_records`, a documented fast path for benchmarks only: it
bulk-inserts settings *and* their replication metadata (one HLC and feed sequence each, exactly
as the engine would stamp them) in one transaction instead of 100,000 single writes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from multinode import PYTHON, REPO, Cluster, Node, wait_until

FIRST_SYNC = 10_000
SMALL = 1_000
LARGE = int(os.environ.get("BENCH_LARGE", "100000"))
IDLE_ROUNDS = 20
LATENCY_ROUNDS = 5
INTERVAL_WITHOUT_PUSH = 5


def seed_records(*, prefix: str, start: int, count: int, batch: int = 5_000) -> int:
    """Bulk-insert ``count`` plain settings ``<prefix>_<n>`` with their feed entries (bench only).

    Runs inside the node (``manage.py shell``). Each record gets a fresh HLC and the next feed
    sequence from the locked ``NodeClock``, like a local write; no per-record signal is sent.
    Returns the node's last sequence number.
    """
    from django.db import transaction

    from configsync.models import ReplicatedRecord, SystemConfig
    from configsync.replication import registry
    from configsync.replication.hlc import HLC, physical_now_ms
    from configsync.replication.services.clock import clock_locked
    from configsync.replication.services.local import json_safe
    from configsync.services.node import node_id

    rm = registry.get("configsync.systemconfig")
    me = node_id()
    with transaction.atomic():
        clock = clock_locked()
        wall = max(physical_now_ms(), clock.last_wall_ms + 1)
        for offset in range(0, count, batch):
            rows = [
                SystemConfig(key=f"{prefix}_{n:07d}", value=f"value-{n}", category="bench")
                for n in range(start + offset, start + min(offset + batch, count))
            ]
            SystemConfig.objects.bulk_create(rows)
            meta = []
            for i, row in enumerate(rows):
                stamp = str(HLC(wall, offset + i, me))
                meta.append(
                    ReplicatedRecord(
                        model_label=rm.label,
                        natural_key=row.key,
                        hlc=stamp,
                        origin_node=me,
                        version_vector={me: stamp},
                        deleted=False,
                        data=json_safe(rm.serialize(row)),
                        seq=clock.last_seq + offset + i + 1,
                    )
                )
            ReplicatedRecord.objects.bulk_create(meta)
        clock.last_wall_ms, clock.last_logical = wall, count
        clock.last_seq += count
        clock.save()
        return int(clock.last_seq)


def _seed(node: Node, *, prefix: str, start: int, count: int) -> float:
    began = time.perf_counter()
    node.shell(
        "from bench.replication import seed_records\n"
        f"seed_records(prefix={prefix!r}, start={start}, count={count})\n",
        timeout=1800,
    )
    return time.perf_counter() - began


def _peer_id(node: Node, name: str) -> int:
    out = node.shell(
        "from configsync.models import Peer\n"
        "from configsync.replication.services.peers import peer_seed_from_settings\n"
        f"peer_seed_from_settings(); print(Peer.objects.get(name={name!r}).pk)\n"
    )
    return int(out.strip().splitlines()[-1])


def _timed_cycles(node: Node, *, peer: str, rounds: int) -> list[float]:
    """Run ``rounds`` full-duplex cycles in one process on ``node``; seconds per cycle."""
    peer_id = _peer_id(node, peer)
    out = node.shell(
        "import time\n"
        "from configsync.replication.services.cycle import sync_cycle\n"
        f"for _ in range({rounds}):\n"
        "    t = time.perf_counter()\n"
        f"    sync_cycle(peer_id={peer_id}, pull=True, push=True)\n"
        "    print('T', time.perf_counter() - t)\n",
        timeout=3600,
    )
    return [float(line.split()[1]) for line in out.splitlines() if line.startswith("T ")]


def _sync_until(node: Node, *, peer: str, prefix: str, target: int) -> float:
    """Cycles with ``peer`` in one process on ``node`` until it holds ``target`` ``prefix``
    records; the seconds that took (however many cycles the engine needs per batch)."""
    peer_id = _peer_id(node, peer)
    out = node.shell(
        "import time\n"
        "from configsync.models import SystemConfig\n"
        "from configsync.replication.services.cycle import sync_cycle\n"
        "t = time.perf_counter()\n"
        f"while SystemConfig.objects.filter(key__startswith={prefix + '_'!r}).count() < {target}:\n"
        f"    sync_cycle(peer_id={peer_id}, pull=True, push=True)\n"
        "print('T', time.perf_counter() - t)\n",
        timeout=3600,
    )
    return float(next(x for x in out.splitlines() if x.startswith("T ")).split()[1])


def _count(node: Node, prefix: str) -> int:
    rows = node.sql(
        "SELECT COUNT(*) FROM configsync_systemconfig WHERE key LIKE %s", [prefix + "_%"]
    )
    return int(rows[0][0])


def _latency(writer: Node, reader: Node, *, rounds: int, tag: str) -> list[float]:
    """Seconds from a committed write on ``writer`` to the row being readable on ``reader``."""
    results = []
    for i in range(rounds):
        key = f"BENCH_LATENCY_{tag}_{i}_{time.monotonic_ns() % 10**9}"
        code = (
            "import time\n"
            "from configsync.services.system_config import system_config_set\n"
            f"system_config_set(key={key!r}, value='x')\n"
            "print('T', time.time())\n"
        )
        proc = subprocess.Popen(
            [PYTHON, "manage.py", "shell", "-c", code],
            cwd=REPO,
            env=writer.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda key=key: reader.config_exists(key), timeout=120, interval=0.01)
        seen = time.time()
        out, _ = proc.communicate(timeout=60)
        written = next(float(x.split()[1]) for x in out.splitlines() if x.startswith("T "))
        results.append(max(0.0, seen - written))
        time.sleep(0.5)
    return results


def _fmt(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"median {statistics.median(ms):.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)})"
    )


def main() -> None:
    backend = "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
    broker = "redis" if os.environ.get("REDIS_URL") else "filesystem"
    print(f"backends: {backend} + {broker}; python {sys.version.split()[0]}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="configsync-bench-"))

    try:
        bench_sync(root)
        bench_latency(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_sync(root: Path) -> None:
    """Figures 1 and 2: first-sync throughput and idle cycle cost at two sizes."""
    # 1 and 2: foreground cycles only (beat off, no worker), so nothing else competes. One
    # cluster at a time: they reuse node names, hence database names and Redis DBs.
    small = Cluster(root / "small", ["a", "b"], interval=0)
    try:
        small.migrate()
        for node in small:
            node.start(celery=False)
        _seed(small["a"], prefix="SMALL", start=0, count=SMALL)
        _sync_until(small["b"], peer="a", prefix="SMALL", target=SMALL)
        idle_small = _timed_cycles(small["b"], peer="a", rounds=IDLE_ROUNDS)
    finally:
        small.destroy()
    print(f"idle cycle at {SMALL:,} records: {_fmt(idle_small)}", flush=True)

    cluster = Cluster(root / "large", ["a", "b"], interval=0)
    try:
        cluster.migrate()
        for node in cluster:
            node.start(celery=False)
        a, b = cluster["a"], cluster["b"]
        seconds = _seed(a, prefix="FIRST", start=0, count=FIRST_SYNC)
        print(f"seeded {FIRST_SYNC:,} records on a in {seconds:.1f} s (bulk fast path)", flush=True)
        first = _sync_until(b, peer="a", prefix="FIRST", target=FIRST_SYNC)
        print(
            f"first sync of {FIRST_SYNC:,} records a -> b: {first:.2f} s = "
            f"{FIRST_SYNC / first:,.0f} records/s",
            flush=True,
        )
        _seed(a, prefix="LARGE", start=0, count=LARGE - FIRST_SYNC)
        catch_up = _sync_until(b, peer="a", prefix="LARGE", target=LARGE - FIRST_SYNC)
        print(
            f"(b caught up on {LARGE - FIRST_SYNC:,} more records in {catch_up:.1f} s = "
            f"{(LARGE - FIRST_SYNC) / catch_up:,.0f} records/s)",
            flush=True,
        )
        idle_large = _timed_cycles(b, peer="a", rounds=IDLE_ROUNDS)
    finally:
        cluster.destroy()
    print(f"idle cycle at {LARGE:,} records: {_fmt(idle_large)}", flush=True)
    ratio = statistics.median(idle_large) / statistics.median(idle_small)
    print(f"idle cycle cost ratio {LARGE:,} / {SMALL:,} records: {ratio:.2f}x", flush=True)


def bench_latency(root: Path) -> None:
    """Figure 3: write -> visible, with push on write and with the beat only."""
    for push, interval in ((True, 30), (False, INTERVAL_WITHOUT_PUSH)):
        pair = Cluster(
            root / f"latency-{push}",
            ["a", "b"],
            interval=interval,
            extra_env={"CONFIGSYNC_PUSH_ON_WRITE": "true" if push else "false"},
        )
        try:
            pair.start()
            time.sleep(3)  # let the worker and beat settle
            values = _latency(pair["a"], pair["b"], rounds=LATENCY_ROUNDS, tag=str(push))
        finally:
            pair.destroy()
        label = "with push on write" if push else f"beat only, every {interval} s"
        print(f"write -> visible on the peer, {label}: {_fmt(values)}", flush=True)
