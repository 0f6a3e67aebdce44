"""Push on commit between real node processes (``python -m bench push``).

Prints, measured in one run on this machine (no assertions), and records goal rows:

0. **the floor**: one signed push of one change from a to b through the transport a's pusher
   uses, b applying it, measured between the writes of figure 1 (so both see the same load):
   a push on write costs that plus the writer's commit and the trip through the broker.
1. **write -> visible**: ``BENCH_PUSH_ROUNDS`` (200) settings written one at a time through node
   a's REST API (an API key with the write scope, a kept-alive session), a few tens of ms apart;
   each is timed from the row's save on a (its ``updated_at``, taken just before the write's
   commit: an upper bound of commit -> visible) until a query on node b's database (one kept
   connection, polled every ms) finds the row; p50 and p99 (the goal). Also printed: the same
   from just before the write request was sent, and the write request itself.
2. **a burst of ``BENCH_PUSH_BURST`` (1,000) writes**, committed by four writer processes on node
   a at once (``system_config_set``, as fast as this machine commits them; the time they took is
   printed as the writers' floor): all must arrive on b; how long that took after the last
   commit; how many pushes carried them (``SyncRun`` rows of a with something pushed, the
   ``sync_peer`` tasks a's worker ran, the signed requests b received from a).

Figure 1 also prints where the time went, from what the nodes record (no instrumentation): the
write's save -> a's push cycle started (``SyncRun.started_at``) -> b accepted the signed push
(``SyncNonce.seen_at``) -> visible on b.

Both nodes run web, a Celery worker with beat and a pusher (``Cluster(pusher=True)``, as the
Procfile runs them), push on write on, the beat every 30 s (so the beat carries nothing in the
measured windows but its own cycle). Backends follow the
environment as for the tests (``TEST_DATABASE_URL``, ``REDIS_URL`` with ``MULTINODE_REDIS_DBS``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench._report import goal
from configsync.replication.transports.http import kept_alive_session
from multinode import PYTHON, REPO, Cluster, Node, wait_until

ROUNDS = int(os.environ.get("BENCH_PUSH_ROUNDS", "200"))
BURST = int(os.environ.get("BENCH_PUSH_BURST", "1000"))
WRITERS = 4
P50_GOAL_MS = 20.0
P99_GOAL_MS = 100.0


class Watcher:
    """One kept connection to a node's database, polled for a setting's row."""

    def __init__(self, node: Node) -> None:
        self.url = node.database_url
        if self.url.startswith("sqlite"):
            path = urlsplit(self.url).path
            self.conn: Any = sqlite3.connect(path[1:] if path.startswith("//") else path)
            self.mark = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(self.url, autocommit=True)
            self.mark = "%s"

    def exists(self, key: str) -> bool:
        sql = f"SELECT 1 FROM configsync_systemconfig WHERE key = {self.mark}"
        return self.conn.execute(sql, (key,)).fetchone() is not None

    def count(self, prefix: str) -> int:
        sql = f"SELECT COUNT(*) FROM configsync_systemconfig WHERE key LIKE {self.mark}"
        return int(self.conn.execute(sql, (prefix + "%",)).fetchone()[0])

    def wait_for(self, key: str, *, timeout: float = 60.0) -> float:
        """``time.time()`` when the row was first seen (polled every millisecond)."""
        deadline = time.time() + timeout
        while True:
            if self.exists(key):
                return time.time()
            if time.time() > deadline:
                raise TimeoutError(f"{key} never arrived")
            time.sleep(0.001)

    def close(self) -> None:
        self.conn.close()


def _api_key(node: Node) -> str:
    out = node.cli("apikey", "create", "bench-push", "--write", check=True).stdout
    return out.strip().splitlines()[-1].strip()


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class FloorPusher:
    """The same run's floor, measured between the writes: a process with a's environment that
    sends, when asked, one signed push of one change to b through the transport a's pusher uses
    (b applying it) and answers its round trip."""

    def __init__(self, a: Node) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-c", _django_script(_FLOOR), "b"],
            cwd=REPO,
            env=a.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def push(self) -> float:
        """One push's round trip, in ms."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("push\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline().split()[1])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _seconds(value: Any) -> float:
    """A timestamp column as the epoch's seconds (SQLite answers ISO text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return float(value.timestamp())


def _stages(a: Node, b: Node, rounds: list[tuple[float, float]]) -> dict[str, list[float]]:
    """Where each write's time went, from what the nodes recorded (no instrumentation): for each
    round ``(saved, seen)``, the push cycle of a that started in it (``SyncRun.started_at``,
    taken after the cycle's first query) and the signed request b accepted from a in it
    (``SyncNonce.seen_at``, taken once its signature was checked, before the apply)."""
    since = datetime.fromtimestamp(rounds[0][0] - 1).astimezone()
    runs = sorted(
        _seconds(row[0])
        for row in a.sql(
            "SELECT started_at FROM configsync_syncrun WHERE pushed > 0 AND started_at >= %s",
            [since],
        )
    )
    nonces = sorted(
        _seconds(row[0])
        for row in b.sql(
            "SELECT seen_at FROM configsync_syncnonce WHERE node = %s AND seen_at >= %s",
            [a.node_id, since],
        )
    )
    stages: dict[str, list[float]] = {"pickup": [], "request": [], "apply": []}
    for saved, seen in rounds:
        run = next((t for t in runs if saved <= t <= seen), None)
        accepted = next((t for t in nonces if (run or saved) <= t <= seen), None)
        if run is None or accepted is None:
            continue
        stages["pickup"].append((run - saved) * 1000)
        stages["request"].append((accepted - run) * 1000)
        stages["apply"].append((seen - accepted) * 1000)
    return stages


def bench_latency(a: Node, b: Node, *, rounds: int) -> dict[str, float]:
    """Figure 1: write on a (REST), visible on b; the floor, one push, measured between the
    writes (so both see the same load), and where the time went."""
    # Kept alive, acknowledging answers at once (runserver would otherwise stall each one 40 ms).
    session = kept_alive_session()
    session.headers["Authorization"] = f"Api-Key {_api_key(a)}"
    watcher = Watcher(b)
    floor = FloorPusher(a)
    from_save, from_send, requests_ms, floors = [], [], [], []
    visible: list[tuple[float, float]] = []
    try:
        for i in range(rounds + 5):
            key = f"BENCH_PUSH_{i:04d}"
            sent = time.time()
            response = session.post(
                f"{a.base_url}/api/v1/configs/system/",
                json={"key": key, "value": f"v{i}", "category": "bench"},
                timeout=30,
            )
            answered = time.time()
            response.raise_for_status()
            saved = datetime.fromisoformat(response.json()["updated_at"]).timestamp()
            seen = watcher.wait_for(key)
            time.sleep(random.uniform(0.01, 0.04))
            floor_ms = floor.push()
            if i >= 5:  # the first few warm the processes up (connections, imports)
                from_save.append((seen - saved) * 1000)
                from_send.append((seen - sent) * 1000)
                requests_ms.append((answered - sent) * 1000)
                floors.append(floor_ms)
                visible.append((saved, seen))
            time.sleep(random.uniform(0.01, 0.04))
    finally:
        floor.close()
        watcher.close()
        session.close()
    figures = {
        "p50": statistics.median(from_save),
        "p99": _percentile(from_save, 99),
        "send_p50": statistics.median(from_send),
        "send_p99": _percentile(from_send, 99),
        "write_p50": statistics.median(requests_ms),
        "floor": statistics.median(floors),
        "floor_p99": _percentile(floors, 99),
    }
    print(
        f"floor: one signed push of one change a -> b (b applying it), between the writes: p50 "
        f"{figures['floor']:.1f} ms, p99 {figures['floor_p99']:.1f} ms",
        flush=True,
    )
    print(
        f"write -> visible on the peer over loopback, {len(from_save)} writes, from the row's "
        f"save (its updated_at, just before the commit): p50 {figures['p50']:.1f} ms, p99 "
        f"{figures['p99']:.1f} ms; from the write request's start: p50 "
        f"{figures['send_p50']:.1f} ms, p99 {figures['send_p99']:.1f} ms (the request itself: "
        f"p50 {figures['write_p50']:.1f} ms)",
        flush=True,
    )
    stages = _stages(a, b, visible)
    if stages["pickup"]:
        names = {
            "pickup": "save -> a's push cycle started (commit, enqueue, broker, first query)",
            "request": "-> b accepted the signed push (feed read, signing, HTTP, b's auth)",
            "apply": "-> visible on b (b's apply and commit)",
        }
        for name, label in names.items():
            values = stages[name]
            print(
                f"  stage {label}: p50 {statistics.median(values):.1f} ms, p90 "
                f"{_percentile(values, 90):.1f} ms ({len(values)} writes)",
                flush=True,
            )
    return figures


_FLOOR = """
import statistics, sys, time
from configsync.models import Peer
from configsync.replication.hlc import HLC, physical_now_ms
from configsync.replication.transports.http import HttpPeerTransport
from configsync.services.node import node_id

me = node_id()
peer = Peer.objects.get(name=sys.argv[1])
link = HttpPeerTransport(name=peer.name, base_url=peer.base_url, node=me)

def change(n):
    stamp = str(HLC(physical_now_ms(), 0, me))
    key = f"BENCH_FLOOR_{n:04d}"
    data = {"key": key, "value_type": "str", "value": "x", "secret_value": None,
            "is_sensitive": False, "category": "bench", "description": ""}
    return {"model": "configsync.systemconfig", "key": key, "hlc": stamp, "origin": me,
            "vv": {me: stamp}, "deleted": False, "data": data, "losers": []}

for n, _line in enumerate(sys.stdin):
    began = time.perf_counter()
    link.push([change(n)])
    print("F", (time.perf_counter() - began) * 1000, flush=True)
"""


_WRITER = """
import sys, time
from configsync.services.system_config import system_config_set
first, count, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
began = time.time()
for n in range(first, first + count):
    system_config_set(key=f"BENCH_BURST_{n:05d}", value="x", category="bench")
print("T", began, time.time())
"""


@contextlib.contextmanager
def _log_growth(path: Path) -> Iterator[list[str]]:
    """The lines appended to ``path`` during the block (the list is filled on exit)."""
    offset = path.stat().st_size if path.exists() else 0
    lines: list[str] = []
    yield lines
    with path.open("rb") as log:
        log.seek(offset)
        lines.extend(log.read().decode(errors="replace").splitlines())


def bench_burst(a: Node, b: Node, *, writes: int) -> dict[str, float]:
    """Figure 2: ``writes`` commits on a at once; all on b, carried by how many pushes."""
    watcher = Watcher(b)
    per_writer = writes // WRITERS
    b_window = b.sql("SELECT now()")[0][0] if b.database_url.startswith("postgres") else None
    runs_before = int(a.sql("SELECT COUNT(*) FROM configsync_syncrun")[0][0])
    start = time.time() + 8  # time for every writer to import Django and connect
    try:
        with (
            _log_growth(a.log_path("celery")) as worker_lines,
            _log_growth(a.log_path("pusher")) as pusher_lines,
        ):
            writers = [
                subprocess.Popen(
                    [
                        PYTHON,
                        "-c",
                        _django_script(_WRITER),
                        str(n * per_writer),
                        str(per_writer),
                        str(start),
                    ],
                    cwd=REPO,
                    env=a.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for n in range(WRITERS)
            ]
            times = []
            for proc in writers:
                out, err = proc.communicate(timeout=600)
                if proc.returncode != 0:
                    raise RuntimeError(f"writer failed: {err[-2000:]}")
                line = next(x for x in out.splitlines() if x.startswith("T "))
                times.append(tuple(float(v) for v in line.split()[1:]))
            committed = max(end for _, end in times)
            began = min(first for first, _ in times)
            wait_until(
                lambda: watcher.count("BENCH_BURST_") >= per_writer * WRITERS,
                timeout=600,
                interval=0.005,
            )
            arrived = time.time()
            time.sleep(1)  # let the worker log its last task
    finally:
        watcher.close()
    total = per_writer * WRITERS
    received = int(
        b.sql("SELECT COUNT(*) FROM configsync_systemconfig WHERE key LIKE %s", ["BENCH_BURST_%"])[
            0
        ][0]
    )
    runs = a.sql(
        "SELECT COUNT(*), COALESCE(SUM(pushed), 0) FROM configsync_syncrun WHERE id > %s "
        "AND pushed > 0",
        [runs_before],
    )[0]
    durations = sorted(
        (finished - started).total_seconds()
        if not isinstance(started, str)
        else (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        for started, finished in a.sql(
            "SELECT started_at, finished_at FROM configsync_syncrun WHERE id > %s AND pushed > 0",
            [runs_before],
        )
    )
    tasks = sum(
        "configsync.tasks.sync_peer[" in line and "succeeded" in line
        for line in worker_lines + pusher_lines
    )
    requests_from_a = None
    if b_window is not None:
        requests_from_a = int(
            b.sql(
                "SELECT COUNT(*) FROM configsync_syncnonce WHERE node = %s AND seen_at >= %s",
                [a.node_id, b_window],
            )[0][0]
        )
    figures = {
        "writes": float(total),
        "received": float(received),
        "write_seconds": committed - began,
        "complete_after_last_commit": arrived - committed,
        "complete_after_first_write": arrived - began,
        "pushes": float(runs[0]),
        "pushed": float(runs[1]),
        "tasks": float(tasks),
        "requests": float(requests_from_a) if requests_from_a is not None else -1.0,
        "shortest_push": durations[0] if durations else 0.0,
        "median_push": statistics.median(durations) if durations else 0.0,
    }
    print(
        f"burst: {total:,} writes committed on a by {WRITERS} writers in "
        f"{figures['write_seconds']:.2f} s ({total / figures['write_seconds']:,.0f} writes/s, "
        f"the writers' floor); {received:,} of them on b "
        f"{figures['complete_after_last_commit'] * 1000:.0f} ms after the last commit "
        f"({figures['complete_after_first_write']:.2f} s after the first write); carried by "
        f"{runs[0]} pushes (push cycles of a that sent something, {runs[1]} changes in all), "
        f"{tasks} sync_peer tasks on a's worker (push cycle: shortest "
        f"{figures['shortest_push'] * 1000:.0f} ms, median {figures['median_push'] * 1000:.0f} ms)"
        + (
            f", {requests_from_a} signed requests received by b from a"
            if requests_from_a is not None
            else ""
        ),
        flush=True,
    )
    return figures


def _django_script(body: str) -> str:
    return (
        "import os, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'settings.local')\n"
        "django.setup()\n" + body
    )


def main() -> None:
    backend = "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
    broker = "redis" if os.environ.get("REDIS_URL") else "filesystem"
    print(f"backends: {backend} + {broker}; python {sys.version.split()[0]}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="configsync-bench-push-"))
    cluster = Cluster(
        root / "push",
        ["a", "b"],
        interval=30,
        pusher=True,
        extra_env={"CONFIGSYNC_PUSH_ON_WRITE": "true"},
    )
    try:
        cluster.start()
        a, b = cluster["a"], cluster["b"]
        wait_until(lambda: a.sql("SELECT COUNT(*) FROM configsync_peer")[0][0] >= 1, timeout=60)
        time.sleep(3)  # the worker's start-up cycle
        latency = bench_latency(a, b, rounds=ROUNDS)
        floor = latency["floor"]
        burst = bench_burst(a, b, writes=BURST)
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
    goal(
        area="push",
        what=f"write -> visible p50 ({backend} + {broker}, loopback)",
        measured=f"{latency['p50']:.1f} ms ({latency['p50'] / floor:.1f}x the floor)",
        target=f"<= {P50_GOAL_MS:.0f} ms (floor: one push round trip, {floor:.1f} ms)",
        met=latency["p50"] <= P50_GOAL_MS,
    )
    goal(
        area="push",
        what=f"write -> visible p99 ({backend} + {broker}, loopback)",
        measured=f"{latency['p99']:.1f} ms",
        target=f"<= {P99_GOAL_MS:.0f} ms",
        met=latency["p99"] <= P99_GOAL_MS,
    )
    complete = burst["received"] == burst["writes"]
    # Single flight: one push in flight per peer, each carrying all that committed before it,
    # so the pushes are bounded by how long the burst lasted over the shortest push, however
    # many writes; and no task storm: a write whose flag is raised enqueues nothing, so there is
    # at most one task per push besides the one that pushed (it found the pusher busy), plus
    # the beat's cycles.
    window = burst["write_seconds"] + burst["complete_after_last_commit"]
    bound = int(window / burst["shortest_push"]) + 1 if burst["shortest_push"] else 0
    bounded = 0 < burst["pushes"] <= min(bound, burst["writes"] - 1)
    beats = int(window // 30) + 1
    few_tasks = burst["tasks"] <= 2 * burst["pushes"] + beats
    goal(
        area="push",
        what=f"burst of {int(burst['writes']):,} writes in {burst['write_seconds']:.2f} s "
        "(the writers' floor)",
        measured=(
            f"{int(burst['received']):,} arrived, {int(burst['pushes'])} pushes "
            f"({burst['writes'] / max(burst['pushes'], 1):.1f} writes each), "
            f"{int(burst['tasks'])} tasks, complete "
            f"{burst['complete_after_last_commit'] * 1000:.0f} ms after the last commit"
        ),
        target=(
            f"all arrive; pushes <= burst time / shortest push + 1 ({bound}) and < writes; "
            f"tasks <= 2 x pushes + beats ({beats})"
        ),
        met=complete and bounded and few_tasks,
    )
