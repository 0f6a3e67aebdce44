"""A create-or-update racing another transaction that creates the same record first (PostgreSQL).

Real threads with their own connections. The other writer inserts the key and keeps its
transaction open; ours reads (nothing committed yet), then the other commits just before our
insert: our insert violates the unique key, and the service retries once and updates the row.
SQLite serializes writers at ``BEGIN IMMEDIATE``, so the race cannot happen there: skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, models, transaction
from django.db.models.signals import pre_save

from configsync.models import ReplicatedRecord, SystemConfig
from configsync.services.system_config import system_config_set
from providers.models import AIProviderConfig
from providers.services import ai_provider_set
from tests.support.concurrency import run_threads

pytestmark = [pytest.mark.django_db(transaction=True)]
DEADLINE = 60


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE): no concurrent create to race")


def race(
    model: type[models.Model], ours: Callable[[], Any], theirs: Callable[[], Any]
) -> list[BaseException]:
    """Run ``theirs`` in a transaction that commits after ``ours`` has read, before it writes."""
    ours_about_to_insert = threading.Event()
    theirs_written = threading.Event()
    our_thread: list[int] = []

    def before_insert(sender: Any, instance: Any, **kwargs: Any) -> None:
        if threading.get_ident() in our_thread:
            ours_about_to_insert.set()

    def other_writer() -> None:
        with transaction.atomic():
            theirs()
            theirs_written.set()
            assert ours_about_to_insert.wait(DEADLINE), "our write never reached its insert"

    def our_writer() -> None:
        our_thread.append(threading.get_ident())
        assert theirs_written.wait(DEADLINE), "the other writer never wrote"
        ours()

    pre_save.connect(before_insert, sender=model, weak=False)
    try:
        return run_threads([other_writer, our_writer], timeout=DEADLINE)
    finally:
        pre_save.disconnect(before_insert, sender=model)


def test_a_setting_created_concurrently_is_updated_not_an_integrity_error() -> None:
    errors = race(
        SystemConfig,
        ours=lambda: system_config_set(key="RACED", value="ours", category="mine"),
        theirs=lambda: system_config_set(key="RACED", value="theirs"),
    )
    assert errors == []
    record = SystemConfig.objects.get(key="RACED")
    assert (record.value, record.category) == ("ours", "mine")
    feed = ReplicatedRecord.objects.get(model_label="configsync.systemconfig", natural_key="RACED")
    assert feed.data is not None and feed.data["value"] == "ours"


def test_a_provider_created_concurrently_is_updated_not_an_integrity_error() -> None:
    errors = race(
        AIProviderConfig,
        ours=lambda: ai_provider_set(name="raced", kind="ollama", default_model="ours"),
        theirs=lambda: ai_provider_set(name="raced", kind="ollama", default_model="theirs"),
    )
    assert errors == []
    assert AIProviderConfig.objects.get(name="raced").default_model == "ours"


def test_a_create_only_call_racing_a_create_is_refused_and_changes_nothing() -> None:
    from django.core.exceptions import ValidationError

    errors = race(
        SystemConfig,
        ours=lambda: system_config_set(key="RACED", value="ours", create_only=True),
        theirs=lambda: system_config_set(key="RACED", value="theirs"),
    )
    assert len(errors) == 1 and isinstance(errors[0], ValidationError)
    assert "key" in errors[0].message_dict
    assert SystemConfig.objects.get(key="RACED").value == "theirs"
