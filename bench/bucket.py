"""Bucket transport figures against a real S3-compatible server (``python -m bench bucket``).

Prints, measured in one run on this machine (no assertions):

1. the cost of an idle pull (a reader already at the head of every writer: what a cycle with
   nothing to exchange costs) with 100 and with 10,000 segments written: requests by kind and
   time per cycle, and the ratio of the times (it should stay near 1: a reader lists each writer
   after its last read segment, it never lists the whole bucket);
2. the first sync of 10,000 records through the bucket: this node pushing 10,000 records (one
   cycle, push only: 20 segments of 500), and this node pulling and applying 10,000 records
   another writer stored (one cycle, pull only), in records per second.

The server is moto's standalone server on 127.0.0.1 (``multinode.media.s3_server``), a separate
process talked to over HTTP. The 10,000 segments of (1) are sealed exactly as ``push`` seals them
and uploaded in parallel (8 threads), since one ``push`` each would only measure the upload.
Runs itself in a subprocess under ``bench._settings`` with a fresh database: a fresh PostgreSQL
database on ``TEST_DATABASE_URL``'s server when it is set, else a SQLite file in a temporary
directory. ``BENCH_BUCKET_SEGMENTS`` overrides the 10,000 segments of the large measurement.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SMALL = 100
LARGE = int(os.environ.get("BENCH_BUCKET_SEGMENTS", "10000"))
RECORDS = 10_000
IDLE_ROUNDS = 20
WRITER = "bench-writer"
SECOND = "bench-second"
READER = "bench-reader"


def _change(key: str, value: str, node: str, wall: int, logical: int) -> dict[str, Any]:
    from configsync.replication.hlc import HLC

    stamp = str(HLC(wall, logical, node))
    return {
        "model": "configsync.systemconfig",
        "key": key,
        "hlc": stamp,
        "origin": node,
        "vv": {node: stamp},
        "deleted": False,
        "data": {
            "key": key,
            "value_type": "str",
            "value": value,
            "secret_value": None,
            "is_sensitive": False,
            "category": "bench",
            "description": "",
        },
    }


def _fill(server: Any, bucket: str, writer: str, start: int, stop: int) -> None:
    """Segments ``start..stop - 1`` of ``writer``, one change each, sealed as ``push`` does."""
    from configsync.conf import app_settings
    from configsync.replication.hlc import physical_now_ms
    from configsync.replication.transports.bucket.documents import SEGMENT, Layout, seal

    layout = Layout(prefix=app_settings.R2_PREFIX, group=app_settings.GROUP_ID)
    wall = physical_now_ms()
    client = server.client()

    def put(seq: int) -> None:
        item = _change(f"IDLE_{seq:06d}", "v", writer, wall, seq)
        body = seal(
            kind=SEGMENT,
            group=app_settings.GROUP_ID,
            writer=writer,
            seq=seq,
            items=[item],
            secret=app_settings.SYNC_SECRET,
        )
        client.put_object(Bucket=bucket, Key=layout.segment(writer, seq), Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(start, stop)))
    client.close()


def _idle(server: Any, bucket: str, cursor: str) -> tuple[Counter[str], float, dict[str, float]]:
    """Median seconds of an idle cycle's pull (a fresh transport each round, as a cycle opens
    one), the requests of one such pull, and the median ms of each kind of request."""
    from configsync.replication.transports.bucket import BucketTransport

    times: list[float] = []
    requests: Counter[str] = Counter()
    each: dict[str, list[float]] = {}
    started: dict[str, float] = {}
    for _ in range(IDLE_ROUNDS):
        link = BucketTransport(name="r2", node=READER, bucket=bucket, client=server.client())
        seen: Counter[str] = Counter()

        def before(event_name: str, _seen: Counter[str] = seen, **_: Any) -> None:
            operation = event_name.rsplit(".", 1)[-1]
            _seen[operation] += 1
            started[operation] = time.perf_counter()

        def after(event_name: str, **_: Any) -> None:
            operation = event_name.rsplit(".", 1)[-1]
            each.setdefault(operation, []).append(time.perf_counter() - started[operation])

        link.client.meta.events.register("before-send.s3.*", before)
        link.client.meta.events.register("after-call.s3.*", after)
        began = time.perf_counter()
        page = link.pull(cursor, 500, with_log=True)
        times.append(time.perf_counter() - began)
        if page.changes or page.has_more:
            raise RuntimeError("the idle pull was not idle")
        requests = seen
        link.client.close()
    medians = {op: statistics.median(values) * 1000 for op, values in each.items()}
    return requests, statistics.median(times), medians


def _objects(server: Any, bucket: str) -> int:
    client = server.client()
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        count += len(page.get("Contents", []))
    client.close()
    return count


def _idle_costs(server: Any) -> None:
    from configsync.replication.transports.bucket import BucketTransport
    from configsync.replication.transports.vector import vector_encode

    bucket = server.create_bucket()
    second = BucketTransport(name="r2", node=SECOND, bucket=bucket, client=server.client())
    second.push([_change("SECOND", "v", SECOND, 1, 0)])  # the manifest, and a second writer
    second.client.close()
    print(f"idle pull (a cycle with nothing new; median of {IDLE_ROUNDS}, 2 writers):")
    print(
        f"  {'segments':>9} {'objects':>8} {'requests':>9}  {'by kind':<32} {'ms':>6}"
        f"  {'ms per list':>11} {'ms per get':>10}"
    )
    figures: list[tuple[int, float]] = []
    written = 0
    for segments in (SMALL, LARGE):
        began = time.perf_counter()
        _fill(server, bucket, WRITER, written + 1, segments + 1)
        filled = time.perf_counter() - began
        written = segments
        cursor = vector_encode({WRITER: str(segments), SECOND: "1"})
        requests, seconds, each = _idle(server, bucket, cursor)
        figures.append((sum(requests.values()), seconds))
        kinds = ", ".join(f"{n} {op}" for op, n in sorted(requests.items()))
        print(
            f"  {segments:>9,} {_objects(server, bucket):>8,} {sum(requests.values()):>9}  "
            f"{kinds:<32} {seconds * 1000:>6.1f}  {each.get('ListObjectsV2', 0):>11.1f} "
            f"{each.get('GetObject', 0):>10.1f}"
            f"   (segments written in {filled:.1f} s)"
        )
    print(
        f"  ratio {LARGE:,} / {SMALL:,} segments: requests "
        f"{figures[1][0] / figures[0][0]:.2f}, time {figures[1][1] / figures[0][1]:.2f} "
        "(moto answers a list by scanning every key of the bucket in Python: S3 and R2 use an "
        "index, so there only the request count matters)"
    )


def _first_sync(server: Any) -> None:
    from django.test import override_settings

    from bench.replication import seed_records
    from configsync.models import Peer, SystemConfig
    from configsync.replication.hlc import physical_now_ms
    from configsync.replication.services.cycle import sync_cycle
    from configsync.replication.transports.bucket import BucketTransport

    bucket = server.create_bucket()
    # override_settings, not assignment: app_settings forgets resolved values on its signal
    override_settings(**server.env(bucket)).enable()
    peer = Peer.objects.create(name="r2", transport=Peer.TransportKind.BUCKET)
    print(f"first sync of {RECORDS:,} records through the bucket:")

    seed_records(prefix="PUSHED", start=0, count=RECORDS)
    began = time.perf_counter()
    pushed = sync_cycle(peer_id=peer.pk, pull=False, push=True)
    seconds = time.perf_counter() - began
    print(
        f"  push (this node's {pushed.pushed:,} records, one cycle): {seconds:.2f} s, "
        f"{pushed.pushed / seconds:,.0f} records/s"
    )

    other = BucketTransport(name="r2", node="bench-other", bucket=bucket, client=server.client())
    wall = physical_now_ms()
    for start in range(0, RECORDS, 500):
        other.push(
            [
                _change(f"PULLED_{n:06d}", f"value-{n}", "bench-other", wall, n)
                for n in range(start, min(start + 500, RECORDS))
            ]
        )
    other.client.close()
    began = time.perf_counter()
    pulled = sync_cycle(peer_id=peer.pk, pull=True, push=False)
    seconds = time.perf_counter() - began
    applied = SystemConfig.objects.filter(key__startswith="PULLED_").count()
    print(
        f"  pull (another writer's {pulled.pulled:,} records into this node, one cycle): "
        f"{seconds:.2f} s, {pulled.pulled / seconds:,.0f} records/s ({applied:,} stored)"
    )


def run() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    from multinode.media import s3_server

    call_command("migrate", verbosity=0, interactive=False)
    override_settings(
        CONFIGSYNC_NODE_ID="bench-local", CONFIGSYNC_SYNC_SECRET="bench-sync-secret-not-real"
    ).enable()
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"database: {db}; server: moto (standalone, loopback); Python {sys.version.split()[0]}")
    with s3_server() as server:
        _idle_costs(server)
        _first_sync(server)


@contextlib.contextmanager
def _database() -> Iterator[str]:
    if os.environ.get("TEST_DATABASE_URL"):
        from multinode.media import external_database

        with external_database("cs_bench_bucket") as url:
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="cs-bench-bucket-") as directory:
            yield f"sqlite:///{directory}/bench.sqlite3"


def main() -> None:
    with _database() as url:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench._settings", "BENCH_DATABASE_URL": url}
        subprocess.run([sys.executable, "-m", "bench.bucket"], env=env, check=True)


if __name__ == "__main__":
    if os.environ.get("DJANGO_SETTINGS_MODULE") == "bench._settings":
        run()
    else:
        main()
