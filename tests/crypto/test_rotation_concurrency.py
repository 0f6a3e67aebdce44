"""A write racing a key rotation batch keeps its value (PostgreSQL, real threads and connections).

Rotation locks each batch's rows with one ``SELECT … FOR UPDATE`` and writes every copy of a
token only where it still holds the token it read. Both orders are raced here: the write holds
the row when the batch starts (the batch must read the written value, not rotate the older one
over it), and the batch holds the rows when the write comes (the write waits and lands after).
SQLite serializes writers (``BEGIN IMMEDIATE``), so there is nothing to race there: skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings

from configsync.crypto.keyring import generate_key, reset_keyring
from configsync.crypto.rotation import RotationReport, keys_rotate, keys_status
from configsync.models import ReplicatedRecord, SystemConfig
from configsync.services.system_config import system_config_set
from tests.support.concurrency import run_threads

pytestmark = [pytest.mark.django_db(transaction=True)]
DEADLINE = 60
OLD = generate_key()
NEW = generate_key()


def use_keys(*keys: str) -> Any:
    reset_keyring()
    return override_settings(CONFIGSYNC_ENCRYPTION_KEYS=list(keys))


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE): no write to race")


@pytest.fixture
def secrets_on_old_key() -> Iterator[None]:
    with use_keys(OLD):
        for n in range(5):
            system_config_set(key=f"RACE_{n}", value=f"sk-CANARY-race-{n}", is_sensitive=True)
    yield
    reset_keyring()


def wait_for_lock_waits(count: int) -> None:
    """Until ``count`` other sessions of this database wait for a row lock (a hang deadline,
    not a speed assertion)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"{count} session(s) never waited for a lock")


def assert_written_value_kept(key: str, value: str) -> None:
    with use_keys(NEW):
        assert SystemConfig.objects.get(key=key).secret_value == value
        row_token = SystemConfig.objects.values_list("secret_value", flat=True).get(key=key)
        feed = ReplicatedRecord.objects.get(model_label="configsync.systemconfig", natural_key=key)
        assert feed.data["secret_value"] == str(row_token)
        assert keys_status().not_on_primary == 0
    reset_keyring()


def test_a_write_holding_the_row_when_the_batch_starts_keeps_its_value(
    secrets_on_old_key: None,
) -> None:
    written = threading.Event()
    release = threading.Event()
    reports: list[RotationReport] = []

    def writer() -> None:
        with transaction.atomic():
            system_config_set(key="RACE_2", value="sk-CANARY-written", is_sensitive=True)
            written.set()
            assert release.wait(DEADLINE)

    def rotation() -> None:
        assert written.wait(DEADLINE)
        reports.append(keys_rotate(batch_size=100))

    def referee() -> None:
        assert written.wait(DEADLINE)
        wait_for_lock_waits(1)  # the batch's locking select waits for the writer
        release.set()

    with use_keys(NEW, OLD):
        errors: list[Any] = run_threads([writer, rotation, referee], timeout=DEADLINE)
    assert errors == []
    report = reports[0]
    assert report.complete and not report.unreadable
    assert_written_value_kept("RACE_2", "sk-CANARY-written")


def test_a_write_coming_while_the_batch_holds_the_rows_waits_and_keeps_its_value(
    secrets_on_old_key: None,
) -> None:
    feed_held = threading.Event()
    release = threading.Event()
    reports: list[RotationReport] = []

    def feed_holder() -> None:
        # Holds RACE_4's feed row: the batch locks and rewrites the rows, then waits here.
        with transaction.atomic():
            list(
                ReplicatedRecord.objects.select_for_update()
                .filter(model_label="configsync.systemconfig", natural_key="RACE_4")
                .values_list("pk")
            )
            feed_held.set()
            assert release.wait(DEADLINE)

    def rotation() -> None:
        assert feed_held.wait(DEADLINE)
        reports.append(keys_rotate(batch_size=100))

    def writer() -> None:
        assert feed_held.wait(DEADLINE)
        wait_for_lock_waits(1)  # the batch holds the rows now
        system_config_set(key="RACE_4", value="sk-CANARY-written-later", is_sensitive=True)

    def referee() -> None:
        assert feed_held.wait(DEADLINE)
        wait_for_lock_waits(2)  # the batch waits for the feed row, the writer for the batch
        release.set()

    with use_keys(NEW, OLD):
        errors: list[Any] = run_threads([feed_holder, rotation, writer, referee], timeout=DEADLINE)
    assert errors == []
    report = reports[0]
    assert report.complete and not report.unreadable
    assert_written_value_kept("RACE_4", "sk-CANARY-written-later")
    with use_keys(NEW):
        assert SystemConfig.objects.get(key="RACE_3").secret_value == "sk-CANARY-race-3"
    reset_keyring()
