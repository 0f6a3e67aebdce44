"""Key rotation throughput (``python -m bench rotation``).

Seeds ``BENCH_ROTATION_RECORDS`` (default 100,000) sensitive settings whose tokens are on an old
key — each with its change-feed copy (``ReplicatedRecord.data``) and one history version
(``RecordVersion``), as the engine keeps them — then times ``configsync keys rotate`` to a new
key and prints, measured in one run on the same database (no assertions):

* records per second of the rotation, its SQL statements per batch, and where its time goes
  (executing each kind of statement, and the rest: Python and commits);
* the floor it is judged against: the same tokens decrypted and re-encrypted with AES-GCM in
  plain Python (one ``AESGCM`` per key), plus the database rewriting each of the three copies of
  every token (row, feed copy, history version) in place — ``SET column = column``, batched and
  committed like the rotation, nothing sent — which no rotation of this schema can beat;
* what "store each token once" would cost the feed: reading every feed page of the same records
  as the feed does (by ``seq``, 1,000 per page) with and without a join to the model rows for
  their tokens (see the ``configsync.crypto.rotation`` docstring for why the copy is kept).

Each round rotates to a new key, with every table rewritten compactly first (``VACUUM FULL``:
full pages, as after a fresh load) so no phase profits from the free space another left; the
best of ``ROUNDS`` is kept. ``BENCH_ROTATION_BATCH`` overrides the batch size.
Records the goal row (``>= 50,000 records/s on PostgreSQL``). Runs itself in a subprocess under
``bench._settings`` against a scratch database made and dropped by Django's test-database
machinery (``<database>_bench_rotation``; a SQLite file under var/ without
``TEST_DATABASE_URL``), so nothing it seeds stays behind.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

RECORDS = int(os.environ.get("BENCH_ROTATION_RECORDS", "100000"))
BATCH = int(os.environ.get("BENCH_ROTATION_BATCH", "0")) or None  # None: the setting's default
ROUNDS = 2
GOAL_RECORDS_PER_S = 50_000
FEED_PAGE = 1_000
_RESULT = "ROTATION-RESULT "


def _seed(count: int, old_key: str, *, chunk: int = 5_000) -> list[tuple[int, str, str]]:
    """Bulk-insert ``count`` sensitive settings on ``old_key`` with their feed row and one history
    version (the wire form the engine would store); ``(pk, key, token)`` of each row."""
    from django.db import transaction

    from configsync.crypto.fields import Ciphertext, encryption_context_for
    from configsync.crypto.keyring import Keyring, parse_key
    from configsync.models import RecordVersion, ReplicatedRecord, SystemConfig
    from configsync.replication import registry
    from configsync.replication.hlc import HLC, physical_now_ms
    from configsync.replication.services.clock import clock_locked
    from configsync.replication.services.local import json_safe
    from configsync.services.node import node_id

    keyring = Keyring([parse_key(old_key)])
    rm = registry.get("configsync.systemconfig")
    me = node_id()
    seeded: list[tuple[int, str, str]] = []
    with transaction.atomic():
        clock = clock_locked()
        wall = max(physical_now_ms(), clock.last_wall_ms + 1)
        for offset in range(0, count, chunk):
            rows = []
            for n in range(offset, min(offset + chunk, count)):
                key = f"ROT_{n:07d}"
                token = keyring.encrypt(
                    f"sk-CANARY-bench-{n}",
                    context=encryption_context_for(
                        model_label=rm.label, field_name="secret_value", natural_key=key
                    ),
                )
                rows.append(
                    SystemConfig(
                        key=key,
                        is_sensitive=True,
                        secret_value=Ciphertext(token),
                        category="bench",
                    )
                )
            SystemConfig.objects.bulk_create(rows)
            feed, history = [], []
            for i, row in enumerate(rows):
                stamp = str(HLC(wall, offset + i, me))
                data = json_safe(rm.serialize(row))
                feed.append(
                    ReplicatedRecord(
                        model_label=rm.label,
                        natural_key=row.key,
                        hlc=stamp,
                        origin_node=me,
                        version_vector={me: stamp},
                        data=data,
                        seq=clock.last_seq + offset + i + 1,
                    )
                )
                history.append(
                    RecordVersion(
                        model_label=rm.label,
                        natural_key=row.key,
                        number=1,
                        hlc=stamp,
                        origin_node=me,
                        data=data,
                        actor="bench",
                        via="bench",
                    )
                )
                seeded.append((row.pk, row.key, str(row.__dict__["secret_value"])))
            ReplicatedRecord.objects.bulk_create(feed)
            RecordVersion.objects.bulk_create(history)
        clock.last_wall_ms, clock.last_logical = wall, count
        clock.last_seq += count
        clock.save()
    return seeded


_TABLES = ("configsync_systemconfig", "configsync_replicatedrecord", "configsync_recordversion")
"""The three copies of each token: the row, its feed copy, its history version."""


def _compact() -> None:
    """Rewrite the three tables compactly (no free space in their pages, like a fresh load), so
    every measured phase starts from the same layout whatever the phase before it left."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in _TABLES:
                cursor.execute(f"VACUUM FULL ANALYZE {table}")
        else:
            cursor.execute("VACUUM")
            cursor.execute("ANALYZE")


def _crypto_floor(seeded: list[tuple[int, str, str]], old_key: str, new_key: str) -> float:
    """Seconds to decrypt and re-encrypt every token in plain Python (one AESGCM per key)."""
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from configsync.crypto.keyring import parse_key

    old, new = parse_key(old_key), parse_key(new_key)
    opener, sealer = AESGCM(old.material), AESGCM(new.material)
    began = time.perf_counter()
    for _pk, key, token in seeded:
        context = f"configsync.systemconfig.secret_value:{key}"
        blob = token.split(":", 2)[2]
        raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        plain = opener.decrypt(raw[:12], raw[12:], f"enc1|{old.kid}|{context}".encode())
        nonce = os.urandom(12)
        sealed = sealer.encrypt(nonce, plain, f"enc1|{new.kid}|{context}".encode())
        f"enc1:{new.kid}:{base64.urlsafe_b64encode(nonce + sealed).rstrip(b'=').decode()}"
    return time.perf_counter() - began


def _update_floor(table: str, column: str, batch: int) -> float:
    """Seconds for the database to rewrite ``column`` of every row of ``table`` in place
    (``SET column = column``: a new row version, nothing sent), ``batch`` rows per transaction:
    the least a rotation pays to write one copy of each token."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} ORDER BY id")
        ids = [row[0] for row in cursor.fetchall()]
    began = time.perf_counter()
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {column} = {column} WHERE id >= %s AND id <= %s",
                [part[0], part[-1]],
            )
    return time.perf_counter() - began


def _feed_read(*, join: bool) -> float:
    """Seconds to read every feed page (by ``seq``), optionally joining the rows' tokens."""
    from django.db import connection

    columns = "r.seq, r.model_label, r.natural_key, r.hlc, r.origin_node, r.version_vector, r.data"
    source = "configsync_replicatedrecord AS r"
    if join:
        columns += ", s.secret_value"
        source += (
            " LEFT JOIN configsync_systemconfig AS s"
            " ON r.model_label = 'configsync.systemconfig' AND s.key = r.natural_key"
        )
    sql = f"SELECT {columns} FROM {source} WHERE r.seq > %s ORDER BY r.seq LIMIT {FEED_PAGE}"
    began = time.perf_counter()
    since = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(sql, [since])
            rows = cursor.fetchall()
            if not rows:
                break
            since = rows[-1][0]
    return time.perf_counter() - began


@dataclass
class _Run:
    """One timed rotation: its wall time, its report, and its SQL statements by kind."""

    seconds: float
    report: dict[str, Any]
    queries: int = 0
    in_sql: Counter[str] = field(default_factory=Counter)
    """Seconds spent executing statements (sending, server, receiving), per kind of statement."""


_STATEMENT = re.compile(r'^(?:(UPDATE) "(\w+)"|(SELECT)\b.*?\bFROM "(\w+)")', re.DOTALL)


def _rotate(old_key: str, new_key: str) -> _Run:
    """Time ``configsync keys rotate --json`` in this process, statements timed by kind."""
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings

    from configsync.crypto.keyring import reset_keyring

    run = _Run(seconds=0.0, report={})

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        match = _STATEMENT.match(sql)
        kind = " ".join(filter(None, match.groups())) if match else "other statements"
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            run.queries += 1
            run.in_sql[kind] += time.perf_counter() - began

    out = io.StringIO()
    args = ["keys", "rotate", "--json"] + (["--batch-size", str(BATCH)] if BATCH else [])
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[new_key, old_key]):
        reset_keyring()
        with connection.execute_wrapper(timed):
            began = time.perf_counter()
            call_command("configsync", *args, stdout=out)
            run.seconds = time.perf_counter() - began
    reset_keyring()
    run.report = json.loads(out.getvalue())
    report = run.report
    if report["unreadable"] or not report["complete"] or report["rotated"] != 2 * RECORDS:
        raise RuntimeError(f"rotation did not rotate every token: {report}")
    return run


def run() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        connection.settings_dict["TEST"]["NAME"] = f"{old_name}_bench_rotation"
    else:
        connection.settings_dict["TEST"]["NAME"] = str(settings.VAR_DIR / "bench-rotation.sqlite3")
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        measure()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=False)


def measure() -> None:
    """Seed, then ``ROUNDS`` rounds of: rotation to a new key, the floors; the best of each."""
    from django.db import connection

    from configsync.conf import app_settings
    from configsync.crypto.keyring import generate_key

    keys = [generate_key() for _ in range(ROUNDS + 1)]
    batch = BATCH or app_settings.ROTATION_BATCH_SIZE
    print(
        f"database: {connection.vendor}; {RECORDS:,} sensitive settings (row, feed copy, history "
        f"version); batch size {batch:,}; best of {ROUNDS} rounds",
        flush=True,
    )
    began = time.perf_counter()
    seeded = _seed(RECORDS, keys[0])
    print(f"seeded in {time.perf_counter() - began:.1f} s (bulk, benchmark only)", flush=True)

    runs: list[_Run] = []
    crypto: list[float] = []
    updates: dict[str, list[float]] = {table: [] for table in _TABLES}
    feed: dict[bool, list[float]] = {False: [], True: []}
    for old_key, new_key in itertools.pairwise(keys):
        _compact()
        runs.append(_rotate(old_key, new_key))
        _compact()
        for table, column in zip(_TABLES, ("secret_value", "data", "data"), strict=True):
            updates[table].append(_update_floor(table, column, batch))
        crypto.append(_crypto_floor(seeded, keys[0], new_key))
        for join in (False, True):
            feed[join].append(_feed_read(join=join))
    fastest = min(runs, key=lambda run: run.seconds)
    best = fastest.seconds
    rate = RECORDS / best
    per_batch = fastest.queries / max(fastest.report["batches"], 1)
    crypto_s = min(crypto)
    update_s = {table: min(times) for table, times in updates.items()}
    floor_s = crypto_s + sum(update_s.values())
    rows = [
        ("keys rotate: row + feed copy + history version", best),
        *(
            (f"  of which executing {kind}", seconds)
            for kind, seconds in fastest.in_sql.most_common()
            if seconds >= 0.01 * best
        ),
        (
            "  of which the rest (Python: crypto, rows, JSON; commits)",
            best - sum(fastest.in_sql.values()),
        ),
        ("floor: AES-GCM decrypt + encrypt in plain Python", crypto_s),
        *(
            (f"floor: in-place UPDATE of {table} (no transfer)", seconds)
            for table, seconds in update_s.items()
        ),
        ("floor: crypto + the three UPDATEs", floor_s),
    ]
    print(f"\n{'':<68}{'records/s':>12}{'seconds':>9}{'share':>8}")
    for label, seconds in rows:
        print(f"{label:<68}{RECORDS / seconds:>12,.0f}{seconds:>9.2f}{seconds / best:>8.0%}")
    pages = -(-RECORDS // FEED_PAGE)
    plain, joined = min(feed[False]), min(feed[True])
    print(
        f"\nrotation: {fastest.report['rotated']:,} tokens in {fastest.report['batches']:,} "
        f"batches, {per_batch:.1f} SQL queries per batch ({fastest.queries:,} in all); "
        f"{best / floor_s:.2f}x the floor "
        f"(rounds: {', '.join(f'{run.seconds:.2f}' for run in runs)} s)"
        f"\nfeed read of {pages:,} pages of {FEED_PAGE:,} by seq: {plain * 1000 / pages:.2f} ms "
        f"per page as stored, {joined * 1000 / pages:.2f} ms joined to the rows for their tokens "
        f"({joined / plain:.2f}x)",
        flush=True,
    )
    result = {
        "database": connection.vendor,
        "records": RECORDS,
        "records_per_s": rate,
        "floor_per_s": RECORDS / floor_s,
        "queries_per_batch": per_batch,
    }
    print(_RESULT + json.dumps(result), flush=True)


def main() -> None:
    from bench._report import goal

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench._settings"}
    result = None
    with subprocess.Popen(
        [sys.executable, "-m", "bench.rotation"], env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(_RESULT):
                result = json.loads(line[len(_RESULT) :])
            else:
                print(line, end="", flush=True)
    if proc.returncode or result is None:
        raise RuntimeError(f"the rotation benchmark failed (exit {proc.returncode})")
    db = "PostgreSQL" if result["database"] == "postgresql" else "SQLite: judged on PostgreSQL"
    rate = result["records_per_s"]
    goal(
        area="rotation",
        what=f"key rotation, {result['records']:,} records ({db})",
        measured=f"{rate:,.0f} records/s, {result['queries_per_batch']:.1f} queries/batch",
        target=(
            f">= {GOAL_RECORDS_PER_S:,}/s on PostgreSQL (same-run floor, crypto + writing the "
            f"three copies in place: {result['floor_per_s']:,.0f}/s)"
        ),
        met=result["database"] == "postgresql" and rate >= GOAL_RECORDS_PER_S,
    )


if __name__ == "__main__":
    if os.environ.get("DJANGO_SETTINGS_MODULE") == "bench._settings":
        run()
    else:
        main()
