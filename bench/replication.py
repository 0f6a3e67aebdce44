"""First sync and catch-up between two real nodes, against the database's floor (``python -m bench
replication``).

Prints, measured in one run on this machine (no assertions):

1. records per second of a first sync of 10,000 records a -> b (a fresh node pulling everything,
   foreground cycles in one process on b) and the SQL queries b ran per page;
2. the same for a catch-up of ``BENCH_LARGE`` (100,000) records in all: b, holding the first
   10,000, pulls the 90,000 written on a since;
3. the floor each is judged against, measured in the same run on b's own database with the
   rows b stored (the settings and their ``ReplicatedRecord`` rows, keys renamed): PostgreSQL's
   ``COPY`` of them (psycopg's ``copy``, rows built from Python values, the JSON columns
   encoded), or on SQLite ``executemany`` of one ``INSERT`` per table; and Django's
   ``bulk_create`` of the same rows as a peer; and the floor of everything a page writes (the
   same two tables plus the records' history versions and audit events, which applying keeps
   too). Each floor runs in a transaction rolled back.

Then records the goal rows (``bench._report.goal``): on PostgreSQL, first sync and catch-up at
least 20,000 records/s and at least half the same run's ``COPY`` floor, each also against half
the ``COPY`` of the four rows a page writes per record (the setting, its feed row, its history
version and its audit event: the floor while history and audit stay synchronous), and a number of
queries per page that does not grow with the page (O(1), not per record); on SQLite, a first sync at
least 5x what main measured on this machine (``SQLITE_BEFORE``, docs/benchmarks.md), with its
ratio to the ``executemany`` floor.

Nodes are started with the multi-node harness (the ``multinode`` package at the repository
root): separate processes and databases, real HTTP. Backends follow the environment like the
tests: PostgreSQL when ``TEST_DATABASE_URL`` is set (one database per node), Redis when
``REDIS_URL`` is set (``MULTINODE_REDIS_DBS``), else SQLite and the filesystem broker.

Records are seeded with :func:`seed_records`, a documented fast path for benchmarks only: it
bulk-inserts settings *and* their replication metadata (one HLC and feed sequence each, exactly
as the engine would stamp them) in one transaction instead of 100,000 single writes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench._report import goal
from multinode import Cluster, Node

FIRST_SYNC = 10_000
LARGE = int(os.environ.get("BENCH_LARGE", "100000"))
GOAL_RATE = 20_000
FLOOR_SHARE = 0.5
SQLITE_BEFORE = 1_270
"""Records/s of the same first sync on SQLite on main before issue 14 (d6b063b), on this machine
(2 cores shared; docs/benchmarks.md): the median of six runs on 2026-12-01 (1,173 to 1,656/s).
The base of the SQLite goal, 5x; the code it measured is gone, so it cannot run in the same run."""


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


def _figures(out: str) -> dict[str, float]:
    """The ``FIGURES {json}`` line a node's shell printed."""
    line = next(x for x in out.splitlines() if x.startswith("FIGURES "))
    figures: dict[str, float] = json.loads(line.split(" ", 1)[1])
    return figures


_SYNC = """
import json, math, time
from django.db import connection
from django.test.utils import CaptureQueriesContext
from configsync.conf import app_settings
from configsync.models import SystemConfig
from configsync.replication.services.cycle import sync_cycle
prefix, target, peer_id = {prefix!r}, {target}, {peer_id}
with CaptureQueriesContext(connection) as queries:
    began = time.perf_counter()
    while SystemConfig.objects.filter(key__startswith=prefix + "_").count() < target:
        sync_cycle(peer_id=peer_id, pull=True, push=True)
    seconds = time.perf_counter() - began
page = min(int(app_settings.SYNC_BATCH_SIZE), int(app_settings.MAX_PUSH_BATCH))
print("FIGURES " + json.dumps({{
    "seconds": seconds,
    "queries": len(queries.captured_queries),
    "pages": math.ceil(target / page),
    "page": page,
}}))
"""


def _sync_until(node: Node, *, peer: str, prefix: str, target: int) -> dict[str, float]:
    """Cycles with ``peer`` in one process on ``node`` until it holds ``target`` ``prefix``
    records: the seconds that took and the queries ``node`` ran (however many cycles the
    engine needs)."""
    out = node.shell(
        _SYNC.format(prefix=prefix, target=target, peer_id=_peer_id(node, peer)), timeout=3600
    )
    return _figures(out)


_FLOOR = """
import json, time
from django.db import connection, transaction
from django.utils import timezone
from configsync.models import AuditEvent, RecordVersion, ReplicatedRecord, SystemConfig

prefix, offset = {prefix!r}, 10**12
configs = list(SystemConfig.objects.filter(key__startswith=prefix + "_").values_list(
    "key", "value_type", "value", "secret_value", "is_sensitive", "category", "description"))
records = list(ReplicatedRecord.objects.filter(natural_key__startswith=prefix + "_").values_list(
    "model_label", "natural_key", "hlc", "origin_node", "version_vector", "deleted", "data",
    "seq", "received_from", "unreadable"))
versions = list(RecordVersion.objects.filter(natural_key__startswith=prefix + "_").values_list(
    "model_label", "natural_key", "number", "hlc", "origin_node", "deleted", "data", "actor",
    "via"))
events = list(AuditEvent.objects.filter(natural_key__startswith=prefix + "_").values_list(
    "actor", "via", "action", "model_label", "natural_key", "node_id", "origin_node", "hlc",
    "changed_fields", "value_hashes", "details"))
CONFIG = ["key", "value_type", "value", "secret_value", "is_sensitive", "category",
          "description", "created_at", "updated_at"]
RECORD = ["model_label", "natural_key", "hlc", "origin_node", "version_vector", "deleted", "data",
          "seq", "received_from", "unreadable", "updated_at"]
VERSION = ["model_label", "natural_key", "number", "hlc", "origin_node", "deleted", "data",
           "actor", "via", "recorded_at"]
EVENT = ["actor", "via", "action", "model_label", "natural_key", "node_id", "origin_node", "hlc",
         "changed_fields", "value_hashes", "details", "created_at"]


def rows(everything=False):
    # The rows as an applier builds them from Python values: keys renamed, JSON encoded.
    now = timezone.now()
    tables = [
        ("configsync_systemconfig", CONFIG, [("F" + c[0], *c[1:], now, now) for c in configs]),
        ("configsync_replicatedrecord", RECORD, [
            (r[0], "F" + r[1], r[2], r[3], json.dumps(r[4]), r[5], json.dumps(r[6]),
             r[7] + offset, r[8], r[9], now)
            for r in records
        ]),
    ]
    if everything:  # and what the history and the audit trail keep of each
        tables.append(("configsync_recordversion", VERSION, [
            (v[0], "F" + v[1], *v[2:6], json.dumps(v[6]), v[7], v[8], now) for v in versions
        ]))
        tables.append(("configsync_auditevent", EVENT, [
            (*e[:4], "F" + e[4], *e[5:8], json.dumps(e[8]), json.dumps(e[9]), json.dumps(e[10]),
             now)
            for e in events
        ]))
    return tables


def timed(write):
    with transaction.atomic():
        began = time.perf_counter()
        write()
        seconds = time.perf_counter() - began
        transaction.set_rollback(True)
    return seconds


def copy(everything=False):
    with connection.cursor() as cursor:
        raw = cursor.cursor
        for table, columns, data in rows(everything):
            with raw.copy(f"COPY {{table}} ({{', '.join(columns)}}) FROM STDIN") as stream:
                for row in data:
                    stream.write_row(row)


def executemany(everything=False):
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        for table, columns, data in rows(everything):
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {{table}} ({{', '.join(columns)}}) VALUES ({{marks}})",
                [tuple(adapt(v) if hasattr(v, "tzinfo") else v for v in row) for row in data],
            )


def bulk_create():
    SystemConfig.objects.bulk_create(
        [SystemConfig(**dict(zip(CONFIG, ("F" + c[0], *c[1:])))) for c in configs],
        batch_size=1000,
    )
    ReplicatedRecord.objects.bulk_create(
        [ReplicatedRecord(**dict(zip(RECORD, (r[0], "F" + r[1], *r[2:7], r[7] + offset, *r[8:]))))
         for r in records],
        batch_size=1000,
    )


floor = copy if connection.vendor == "postgresql" else executemany
print("FIGURES " + json.dumps({{
    "rows": len(configs),
    "floor": min(timed(floor) for _ in range(2)),
    "floor_all": timed(lambda: floor(everything=True)),
    "bulk_create": timed(bulk_create),
}}))
"""


def _floors(node: Node, *, prefix: str) -> dict[str, float]:
    """The same rows ``node`` stored for ``prefix``, written again by the floor and the peer."""
    return _figures(node.shell(_FLOOR.format(prefix=prefix), timeout=3600))


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def main() -> None:
    postgres = bool(os.environ.get("TEST_DATABASE_URL"))
    backend = "PostgreSQL" if postgres else "SQLite"
    broker = "redis" if os.environ.get("REDIS_URL") else "filesystem"
    print(f"backends: {backend} + {broker}; python {sys.version.split()[0]}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="configsync-bench-"))
    try:
        bench_sync(root, backend=backend)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_sync(root: Path, *, backend: str) -> None:
    """First sync and catch-up a -> b, each against its floor measured on b right after."""
    runs: list[tuple[str, int, dict[str, float], dict[str, float]]] = []
    # Foreground cycles only (beat off, no worker), so nothing else competes.
    cluster = Cluster(root / "sync", ["a", "b"], interval=0)
    try:
        cluster.migrate()
        for node in cluster:
            node.start(celery=False)
        a, b = cluster["a"], cluster["b"]
        seconds = _seed(a, prefix="FIRST", start=0, count=FIRST_SYNC)
        print(f"seeded {FIRST_SYNC:,} records on a in {seconds:.1f} s (bulk fast path)", flush=True)
        sync = _sync_until(b, peer="a", prefix="FIRST", target=FIRST_SYNC)
        runs.append(("first sync", FIRST_SYNC, sync, _floors(b, prefix="FIRST")))
        if LARGE > FIRST_SYNC:
            more = LARGE - FIRST_SYNC
            _seed(a, prefix="LARGE", start=0, count=more)
            sync = _sync_until(b, peer="a", prefix="LARGE", target=more)
            runs.append((f"catch-up to {LARGE:,}", more, sync, _floors(b, prefix="LARGE")))
    finally:
        cluster.destroy()

    floor_name = "COPY" if backend == "PostgreSQL" else "executemany"
    per_page = []
    for what, count, sync, floors in runs:
        rate = _rate(count, sync["seconds"])
        floor = _rate(floors["rows"], floors["floor"])
        peer = _rate(floors["rows"], floors["bulk_create"])
        everything = _rate(floors["rows"], floors["floor_all"])
        per_page.append((sync["queries"] / sync["pages"], int(sync["page"])))
        print(
            f"{what} ({count:,} records a -> b): {rate:,.0f} records/s; the same rows: "
            f"{floor_name} {floor:,.0f}/s ({rate / floor:.2f}x), Django bulk_create "
            f"{peer:,.0f}/s ({rate / peer:.2f}x); {floor_name} of everything a page writes "
            f"(with its history versions and audit events) {everything:,.0f}/s "
            f"({rate / everything:.2f}x); {sync['queries'] / sync['pages']:.1f} queries per "
            f"page of {int(sync['page']):,} on b",
            flush=True,
        )
        if backend == "PostgreSQL":
            goal(
                area="replication",
                what=f"{what} of {count:,} records (PostgreSQL)",
                measured=f"{rate:,.0f} records/s ({rate / floor:.2f}x COPY)",
                target=f">= {GOAL_RATE:,}/s and >= {FLOOR_SHARE}x COPY ({floor:,.0f}/s)",
                met=rate >= GOAL_RATE and rate >= FLOOR_SHARE * floor,
            )
            goal(
                area="replication",
                what=f"{what}, against COPY of the four rows a page writes per record",
                measured=f"{rate:,.0f} records/s ({rate / everything:.2f}x; floor "
                f"{everything:,.0f}/s)",
                target=f">= {FLOOR_SHARE}x the four-row COPY ({FLOOR_SHARE * everything:,.0f}/s)",
                met=rate >= FLOOR_SHARE * everything,
            )
        elif what == "first sync":
            goal(
                area="replication",
                what=f"first sync of {count:,} records (SQLite)",
                measured=f"{rate:,.0f} records/s ({rate / floor:.2f}x executemany, "
                f"{rate / everything:.2f}x executemany of the four rows)",
                target=f">= 5x main ({5 * SQLITE_BEFORE:,}/s; main {SQLITE_BEFORE:,}/s)",
                met=rate >= 5 * SQLITE_BEFORE,
            )
    if backend == "PostgreSQL":
        counts = [queries for queries, _ in per_page]
        page = per_page[0][1]
        goal(
            area="replication",
            what="queries per page applied (first sync / catch-up)",
            measured=" / ".join(f"{q:.1f}" for q in counts) + f" per page of {page:,}",
            target="O(1): the same per page at any size, well under 1 per record",
            met=max(counts) <= 1.25 * min(counts) and max(counts) < 0.1 * page,
        )
