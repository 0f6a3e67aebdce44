"""Concurrency proofs on PostgreSQL: the feed never skips a late commit; apply is idempotent.

Real threads, each with its own database connection, real transactions held open while the
reader polls. SQLite serializes writers at BEGIN IMMEDIATE, so neither race exists there: these
tests are skipped on SQLite with that reason.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from configsync.models import Conflict, ReplicatedRecord, SystemConfig
from configsync.replication.selectors.feed import feed_page
from configsync.replication.services.apply import changes_apply
from configsync.services.node import node_id
from configsync.services.system_config import system_config_set
from tests.support.concurrency import run_threads
from tests.support.replication import REMOTE, remote_change

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE): no concurrent commits to race")


def test_the_feed_never_skips_a_change_that_commits_after_a_reader_passed() -> None:
    writers, per_writer = 4, 12
    written: set[str] = set()
    seen: list[str] = []
    done = threading.Event()
    rng = random.Random(7)

    def writer(n: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(per_writer):
                key = f"W{n}_{i}"
                with transaction.atomic():
                    system_config_set(key=key, value="x")
                    # Hold the transaction open: a late commit is what a reader could skip.
                    time.sleep(rng.uniform(0, 0.02))
                written.add(key)

        return run

    def reader() -> None:
        cursor = ""
        while True:
            finished = done.is_set()
            page = feed_page(node=node_id(), cursor=cursor, limit=3)
            seen.extend(c["key"] for c in page.changes)
            cursor = page.next_cursor
            if finished and not page.has_more:
                return

    reader_errors: list[BaseException] = []
    reader_thread = threading.Thread(target=lambda: reader_errors.extend(run_threads([reader])))
    reader_thread.start()
    errors = run_threads([writer(n) for n in range(writers)])
    done.set()
    reader_thread.join(timeout=120)
    assert not errors and not reader_errors
    assert len(written) == writers * per_writer
    assert sorted(seen) == sorted(written)  # each exactly once, none skipped


def test_the_same_batch_applied_concurrently_gives_the_state_of_one_application() -> None:
    batch = [remote_change(f"K{i}", str(i)) for i in range(20)]
    batch.append(remote_change("GONE", deleted=True))
    outcomes: list[list[str]] = []

    def applier() -> None:
        results = changes_apply(changes=batch, source_node=REMOTE, source_name="peer")
        outcomes.append([r.status for r in results])

    errors = run_threads([applier for _ in range(6)])
    assert not errors
    assert len(outcomes) == 6
    for index in range(len(batch)):
        statuses = sorted(o[index] for o in outcomes)
        assert statuses == ["applied"] + ["stale"] * 5
    assert SystemConfig.objects.count() == 20
    assert ReplicatedRecord.objects.count() == 21
    seqs = list(ReplicatedRecord.objects.values_list("seq", flat=True))
    assert len(set(seqs)) == 21
    assert Conflict.objects.count() == 0


def test_local_writes_racing_remote_changes_of_the_same_keys_converge() -> None:
    keys = [f"R{i}" for i in range(10)]
    # The records exist: both sides update (creating one key from two sides at once is
    # system_config_set's own unique-key race, retried by the caller).
    changes_apply(
        changes=[remote_change(k, "base", node="node-base") for k in keys],
        source_node="node-base",
        source_name="base",
    )
    remote = [remote_change(k, "remote") for k in keys]

    def local_writer() -> None:
        for k in keys:
            system_config_set(key=k, value="local")

    def applier() -> None:
        changes_apply(changes=remote, source_node=REMOTE, source_name="peer")

    errors: list[Any] = run_threads([local_writer, applier])
    assert not errors
    for k in keys:
        rec = ReplicatedRecord.objects.get(natural_key=k)
        value = SystemConfig.objects.get(key=k).value
        # Whichever order they ran in, the model row holds the version the metadata names.
        assert (value == "remote") == (rec.origin_node == REMOTE)


def test_collecting_tombstones_never_deletes_a_record_being_recreated() -> None:
    """A tombstone turned back into a live record by a write in flight is not collected."""
    from datetime import timedelta

    from django.utils import timezone

    from configsync.replication.services.peers import TOMBSTONE_MIN_AGE, tombstones_collect
    from configsync.services.system_config import system_config_delete

    system_config_set(key="BACK", value="1")
    system_config_delete(key="BACK")
    old = timezone.now() - TOMBSTONE_MIN_AGE - timedelta(minutes=1)
    ReplicatedRecord.objects.filter(deleted=True).update(updated_at=old)
    written, release = threading.Event(), threading.Event()

    def recreate() -> None:
        with transaction.atomic():
            system_config_set(key="BACK", value="2")
            written.set()
            assert release.wait(60)

    def collect() -> None:
        assert written.wait(60)
        tombstones_collect()

    def release_once_the_collector_waits() -> None:
        assert written.wait(60)
        with connection.cursor() as cursor:
            for _ in range(600):
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
        release.set()

    errors = run_threads([recreate, collect, release_once_the_collector_waits])
    assert not errors
    record = ReplicatedRecord.objects.get(natural_key="BACK")
    assert not record.deleted and SystemConfig.objects.get(key="BACK").value == "2"
