"""What an idle node costs, at two sizes (``python -m bench idle``).

Prints, measured in one run on this machine (no assertions), and records goal rows:

1. **idle cycle** (nothing to exchange) between two node processes that each hold 1,000, then
   ``BENCH_LARGE`` (100,000) records of their own, with each one's checkpoints at the end of the
   other's feed and the replication logs agreeing (the state after a sync, set directly: a
   first sync of 100,000 records is ``bench.replication``'s business). Per cycle, run as the
   beat's task runs it (``peer_sync``: the peer's lock, then the cycle): the queries on the
   client (counted in its process), the signed requests the peer received (its nonces), the
   queries the peer answers that request with (the same signed request through the peer's own
   view, counted in its process), and the time (median of ``IDLE_ROUNDS``). The ratio of the
   times at the two sizes should stay near 1.
2. **tombstone pass** (``tombstones_collect``, what the beat runs) on the nodes holding 1,000 and
   100,000 records, 100 of them recent tombstones (nothing to collect: the pass every beat
   pays), with the partial index of migration 0007 and, as the same run's peer, without it
   (dropped in a transaction that is rolled back); the plan of the candidate query
   (``EXPLAIN``) is printed.

The two sizes run side by side (two pairs of nodes, names and Redis DBs of their own) and their
measurements alternate, so both share the machine's noise.

Backends follow the environment as for the tests (``TEST_DATABASE_URL``, ``REDIS_URL`` with
``MULTINODE_REDIS_DBS``); no worker or beat runs (the cycles are the only traffic).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench._report import goal
from bench.replication import seed_records
from multinode import Cluster, Node

SMALL = 1_000
LARGE = int(os.environ.get("BENCH_LARGE", "100000"))
IDLE_ROUNDS = 30
TOMBSTONES = 100
PASS_ROUNDS = 20
RATIO_GOAL = 1.5
"""Flat: the large size may cost at most this many times the small one (noise included)."""

__all__ = ["seed_records"]

_LINK = """
import json, uuid
from configsync.models import Peer, PeerCheckpoint, ReplicationLog
from configsync.replication.selectors.feed import feed_last_cursor
from configsync.replication.services.peers import peer_seed_from_settings
args = json.loads({args!r})
peer_seed_from_settings()
peer = Peer.objects.get(name=args["peer"])
Peer.objects.filter(pk=peer.pk).update(node_id=args["peer_node"])
for direction, cursor in (("pull", args["their_end"]), ("push", feed_last_cursor())):
    PeerCheckpoint.objects.update_or_create(
        peer=peer, direction=direction,
        defaults={{"cursor": cursor, "session": args["sessions"][direction]}},
    )
print("END", feed_last_cursor())
"""

_LOG = """
import json
from configsync.models import ReplicationLog
args = json.loads({args!r})
for direction, cursor in args["cursors"].items():
    ReplicationLog.objects.update_or_create(
        node_id=args["node"], direction=direction,
        defaults={{"session": args["sessions"][direction], "cursor": cursor}},
    )
"""

_CYCLES = """
import json, time
from django.db import connection
from django.test.utils import CaptureQueriesContext
from configsync.models import Peer
from configsync.replication.services.sync import peer_sync
peer = Peer.objects.get(name={peer!r})
peer_sync(peer_id=peer.pk)  # warm: connections, imports
times, queries = [], []
for _ in range({rounds}):
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        result = peer_sync(peer_id=peer.pk)
        times.append(time.perf_counter() - began)
    assert result is not None and result.ok and not result.restarted, result
    assert (result.pulled, result.pushed) == (0, 0), result
    queries.append(len(captured))
print("R", json.dumps({{"times": times, "queries": queries}}))
"""

_ANSWER = """
import json, time
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from configsync.conf import app_settings
from configsync.replication.selectors.feed import feed_last_cursor
from configsync.replication.signing import sign
path = f"/api/v1/sync/changes?since={{feed_last_cursor()}}&limit=500&log=true"
client = Client()
counts, times = [], []
for _ in range({rounds}):
    headers = sign(secret=app_settings.SYNC_SECRET, method="GET", path=path, body=b"",
                   node={caller!r})
    extra = {{f"HTTP_{{k.upper().replace('-', '_')}}": v for k, v in headers.items()}}
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        response = client.get(path, HTTP_HOST="127.0.0.1", **extra)
        times.append(time.perf_counter() - began)
    assert response.status_code == 200, response.content
    assert response.json()["changes"] == []
    counts.append(len(captured))
print("R", json.dumps({{"times": times, "queries": counts}}))
"""

_MARK = """
from django.db import connection
from configsync.models import ReplicatedRecord
ids = list(ReplicatedRecord.objects.filter(deleted=False).order_by("-seq")
           .values_list("pk", flat=True)[:{count}])
ReplicatedRecord.objects.filter(pk__in=ids).update(deleted=True, data=None)
with connection.cursor() as cursor:
    cursor.execute("ANALYZE" if connection.vendor == "sqlite" else
                   "ANALYZE configsync_replicatedrecord")
"""

_TOMBSTONES = """
import json, statistics, time
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from configsync.models import ReplicatedRecord
from configsync.replication.services.peers import tombstones_collect

def timed():
    tombstones_collect()
    times = []
    for _ in range({rounds}):
        began = time.perf_counter()
        assert tombstones_collect() == 0
        times.append(time.perf_counter() - began)
    return statistics.median(times)

def plan():
    with CaptureQueriesContext(connection) as captured:
        tombstones_collect()
    sql = next(q["sql"] for q in captured.captured_queries
               if "configsync_replicatedrecord" in q["sql"] and "deleted" in q["sql"]
               and q["sql"].lstrip().upper().startswith("SELECT"))
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(explain + sql)
        return [" ".join(str(c) for c in row) for row in cursor.fetchall()]

indexed, indexed_plan = timed(), plan()
with transaction.atomic():
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX configsync_rr_tombstone_age")
    unindexed, unindexed_plan = timed(), plan()
    transaction.set_rollback(True)
print("R", json.dumps({{"indexed_s": indexed, "unindexed_s": unindexed, "plan": indexed_plan,
                        "plan_without": unindexed_plan}}))
"""


def _result(out: str) -> dict[str, Any]:
    line = next(x for x in out.splitlines() if x.startswith("R "))
    return dict(json.loads(line[2:]))


def _end_of(out: str) -> str:
    return next(x for x in out.splitlines() if x.startswith("END ")).split()[1]


def _nonces(node: Node, caller: str) -> int:
    rows = node.sql("SELECT COUNT(*) FROM configsync_syncnonce WHERE node = %s", [caller])
    return int(rows[0][0])


def _idle_state(a: Node, b: Node) -> None:
    """Both checkpoints of b at the ends of the feeds, and a's log agreeing (as after a sync);
    a knows b by node id too (its nonces are counted by it)."""
    feed_end = "from configsync.replication.selectors.feed import feed_last_cursor\n"
    a_end = _end_of(a.shell(feed_end + "print('END', feed_last_cursor())\n"))
    sessions = {"pull": "1" * 32, "push": "2" * 32}
    args = {"peer": a.name, "peer_node": a.node_id, "their_end": a_end, "sessions": sessions}
    b_end = _end_of(b.shell(_LINK.format(args=json.dumps(args))))
    log = {"node": b.node_id, "sessions": sessions, "cursors": {"pull": a_end, "push": b_end}}
    a.shell(_LOG.format(args=json.dumps(log)))


class _Pair:
    """Two nodes, each holding ``records`` records of its own, in the idle state of a synced
    pair (``_idle_state``). Two pairs run side by side, with node names and Redis DBs of their
    own, so their measurements can alternate and share the machine's noise."""

    def __init__(self, root: Path, records: int, names: list[str], redis_dbs: str) -> None:
        self.records = records
        previous = os.environ.get("MULTINODE_REDIS_DBS")
        os.environ["MULTINODE_REDIS_DBS"] = redis_dbs
        try:
            self.cluster = Cluster(root / f"idle-{records}", names, interval=0)
        finally:
            if previous is None:
                os.environ.pop("MULTINODE_REDIS_DBS", None)
            else:
                os.environ["MULTINODE_REDIS_DBS"] = previous
        self.server, self.client = (self.cluster[name] for name in names)
        self.cycles: list[float] = []
        self.queries: list[int] = []
        self.answers: list[float] = []
        self.answer_queries: list[int] = []
        self.requests = 0
        self.rounds = 0

    def start(self) -> None:
        self.cluster.migrate()
        for node in self.cluster:
            node.start(celery=False)
        for node in self.cluster:
            node.shell(
                "from bench.replication import seed_records\n"
                f"seed_records(prefix={'IDLE_' + node.name.upper()!r}, start=0, "
                f"count={self.records})\n",
                timeout=1800,
            )
        _idle_state(self.server, self.client)
        self.server.shell(_MARK.format(count=TOMBSTONES))

    def measure(self, rounds: int) -> None:
        before = _nonces(self.server, self.client.node_id)
        server_name = self.server.name
        client = _result(
            self.client.shell(_CYCLES.format(peer=server_name, rounds=rounds), timeout=1800)
        )
        self.requests += _nonces(self.server, self.client.node_id) - before
        self.rounds += rounds + 1  # one warm-up cycle
        self.cycles += client["times"]
        self.queries += client["queries"]
        server = _result(
            self.server.shell(_ANSWER.format(caller=self.client.node_id, rounds=rounds))
        )
        self.answers += server["times"]
        self.answer_queries += server["queries"]

    def tombstones(self) -> dict[str, Any]:
        code = _TOMBSTONES.format(rounds=PASS_ROUNDS)
        return _result(self.server.shell(code, timeout=1800))

    def destroy(self) -> None:
        self.cluster.destroy()


def main() -> None:
    backend = "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
    print(f"backend: {backend}; python {sys.version.split()[0]}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="configsync-bench-idle-"))
    dbs = [d for d in os.environ.get("MULTINODE_REDIS_DBS", "10,11,12,13").split(",") if d]
    pairs = [
        _Pair(root, SMALL, ["a", "b"], ",".join(dbs[:2])),
        _Pair(root, LARGE, ["c", "d"], ",".join(dbs[2:4])),
    ]
    try:
        for pair in pairs:
            pair.start()
        for _ in range(IDLE_ROUNDS // 10):  # alternating, so both sizes share the noise
            for pair in pairs:
                pair.measure(10)
        runs = [[pair.tombstones() for pair in pairs] for _ in range(3)]  # alternating
        passes = [
            {
                "indexed_s": statistics.median(run[i]["indexed_s"] for run in runs),
                "unindexed_s": statistics.median(run[i]["unindexed_s"] for run in runs),
                "plan": runs[0][i]["plan"],
                "plan_without": runs[0][i]["plan_without"],
            }
            for i in range(len(pairs))
        ]
    finally:
        for pair in pairs:
            pair.destroy()
        shutil.rmtree(root, ignore_errors=True)
    small, large = pairs
    for pair, tombstones in zip(pairs, passes, strict=True):
        print(
            f"{pair.records:,} records on each node: idle cycle "
            f"{statistics.median(pair.cycles) * 1000:.1f} ms (median of {len(pair.cycles)}), "
            f"{max(pair.queries)} queries here, {pair.requests / pair.rounds:.2f} requests, "
            f"answered by the peer in {max(pair.answer_queries)} queries "
            f"({statistics.median(pair.answers) * 1000:.1f} ms in-process); tombstone pass "
            f"({TOMBSTONES} recent tombstones) {tombstones['indexed_s'] * 1000:.2f} ms, without "
            f"the partial index {tombstones['unindexed_s'] * 1000:.2f} ms",
            flush=True,
        )
        print("  plan: " + " / ".join(tombstones["plan"]), flush=True)
        print("  plan without the index: " + " / ".join(tombstones["plan_without"]), flush=True)
    cycle_ratio = statistics.median(large.cycles) / statistics.median(small.cycles)
    answer_ratio = statistics.median(large.answers) / statistics.median(small.answers)
    pass_ratio = passes[1]["indexed_s"] / passes[0]["indexed_s"]
    peer_ratio = passes[1]["unindexed_s"] / passes[0]["unindexed_s"]
    print(
        f"ratios {LARGE:,} / {SMALL:,} records: idle cycle {cycle_ratio:.2f}x (the peer's "
        f"answer {answer_ratio:.2f}x), tombstone pass {pass_ratio:.2f}x (without the index: "
        f"{peer_ratio:.2f}x)",
        flush=True,
    )
    queries = [max(pair.queries) for pair in pairs]
    answered = [max(pair.answer_queries) for pair in pairs]
    requests = [pair.requests / pair.rounds for pair in pairs]
    goal(
        area="idle",
        what=f"idle cycle, {SMALL:,} and {LARGE:,} records ({backend})",
        measured=(
            f"{queries[0]}/{queries[1]} queries here, {answered[0]}/{answered[1]} on the peer, "
            f"{requests[0]:.0f}/{requests[1]:.0f} request; time {cycle_ratio:.2f}x"
        ),
        target=f"<= 2 queries each side, 1 request, time flat (<= {RATIO_GOAL}x)",
        met=max(queries + answered) <= 2 and max(requests) <= 1 and cycle_ratio <= RATIO_GOAL,
    )
    uses_index = any("tombstone_age" in line for line in passes[1]["plan"])
    goal(
        area="idle",
        what=f"tombstone pass, {SMALL:,} and {LARGE:,} records ({backend})",
        measured=(
            f"{passes[0]['indexed_s'] * 1000:.2f} / {passes[1]['indexed_s'] * 1000:.2f} ms "
            f"({pass_ratio:.2f}x; without the index {peer_ratio:.2f}x), "
            f"{'index' if uses_index else 'NO index'} in the plan"
        ),
        target=f"the partial index used, flat (<= {RATIO_GOAL}x)",
        met=uses_index and pass_ratio <= RATIO_GOAL,
    )
