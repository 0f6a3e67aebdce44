"""``GET /api/v1/health`` reports the worker's and beat's heartbeats; ``?strict=1`` answers 503
when either is older than two intervals (or was never seen), 200 when both are fresh.

The real processes are in tests/multinode/test_health_heartbeat.py; here the heartbeats are
written as the worker and beat write them, at chosen times.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches

from configsync import tasks
from configsync.services import health
from configsync.services.health import (
    heartbeat_interval_seconds,
    heartbeat_read,
    heartbeat_record,
)
from settings.celery import app as celery_app

pytestmark = pytest.mark.django_db

INTERVAL = 2


@pytest.fixture(params=["files", "redis"])
def store(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> Iterator[str]:
    """Heartbeats in the node's folder (no Redis) or in Redis (the test run's REDIS_URL)."""
    settings.CONFIGSYNC_SYNC_INTERVAL_SECONDS = INTERVAL
    settings.CONFIGSYNC_VAR_DIR = tmp_path / "var"
    if request.param == "files":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set: heartbeats are kept in files")
    for role in health.HEARTBEAT_ROLES:
        caches["default"].delete(f"heartbeat:{role}")
    yield request.param
    for role in health.HEARTBEAT_ROLES:
        caches["default"].delete(f"heartbeat:{role}")


def beats(*, worker_age: float | None, beat_age: float | None) -> None:
    now = time.time()
    if worker_age is not None:
        heartbeat_record(role="worker", at=now - worker_age)
    if beat_age is not None:
        heartbeat_record(role="beat", at=now - beat_age)


def test_fresh_heartbeats_answer_200_even_when_strict(client, store: str) -> None:
    beats(worker_age=0.5, beat_age=1)
    for path in ("/api/v1/health", "/api/v1/health?strict=1"):
        response = client.get(path)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["status"] == "ok"
        worker, beat = body["components"]["worker"], body["components"]["beat"]
        assert worker["ok"] is True and beat["ok"] is True
        assert 0.4 <= worker["age_seconds"] <= 2 * INTERVAL
        assert worker["max_age_seconds"] == beat["max_age_seconds"] == 2 * INTERVAL


@pytest.mark.parametrize(
    ("worker_age", "beat_age", "stale"),
    [
        (2 * INTERVAL + 1, 0, "worker"),
        (0, 2 * INTERVAL + 1, "beat"),
        (None, 0, "worker"),  # never seen
        (0, None, "beat"),
    ],
    ids=["worker-stale", "beat-stale", "worker-never-seen", "beat-never-seen"],
)
def test_a_stale_heartbeat_is_503_when_strict_and_degraded_otherwise(
    client, store: str, worker_age: float | None, beat_age: float | None, stale: str
) -> None:
    beats(worker_age=worker_age, beat_age=beat_age)
    plain = client.get("/api/v1/health")
    assert plain.status_code == 200
    assert plain.json()["status"] == "degraded"
    strict = client.get("/api/v1/health?strict=1")
    assert strict.status_code == 503
    body = strict.json()
    assert body["status"] == "error"
    assert body["components"][stale]["ok"] is False
    fresh = "beat" if stale == "worker" else "worker"
    assert body["components"][fresh]["ok"] is True
    age = body["components"][stale]["age_seconds"]
    assert age is None if (worker_age if stale == "worker" else beat_age) is None else age > 4


def test_heartbeats_are_kept_where_every_process_of_the_node_reads_them(
    settings: Any, store: str, tmp_path: Path
) -> None:
    heartbeat_record(role="worker", at=1_700_000_000.25)
    assert heartbeat_read(role="worker") == 1_700_000_000.25
    in_files = tmp_path / "var" / "heartbeats" / "worker"
    if store == "files":
        assert in_files.read_text() == "1700000000.25"
        assert list(in_files.parent.iterdir()) == [in_files]  # no temporary file left
    else:
        assert not in_files.exists()
        assert caches["default"].get("heartbeat:worker") == 1_700_000_000.25


def test_a_heartbeat_that_cannot_be_written_is_logged_not_raised(
    settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = ""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "heartbeats").write_text("a file where the folder goes")
    settings.CONFIGSYNC_VAR_DIR = tmp_path / "var"
    heartbeat_record(role="beat")
    assert "could not record the beat heartbeat" in caplog.text
    assert heartbeat_read(role="beat") is None


@pytest.mark.parametrize(("interval", "expected"), [(2, 2), (30, 30), (3600, 60), (0, 30)])
def test_the_heartbeat_interval_follows_the_sync_interval_up_to_a_minute(
    settings: Any, interval: int, expected: int
) -> None:
    settings.CONFIGSYNC_SYNC_INTERVAL_SECONDS = interval
    assert heartbeat_interval_seconds() == expected
    entry = tasks.beat_schedule()["configsync-heartbeat"]
    assert entry["task"] == "configsync.tasks.heartbeat"
    assert entry["schedule"].total_seconds() == expected


def test_the_heartbeat_task_is_the_workers_heartbeat(store: str) -> None:
    assert heartbeat_read(role="worker") is None
    before = time.time()
    tasks.heartbeat.run()
    recorded = heartbeat_read(role="worker")
    assert recorded is not None and recorded >= before
    assert heartbeat_read(role="beat") is None


def test_beat_records_when_it_starts_and_whenever_it_sends_a_task(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the thread running beat: the web and worker processes publish too."""
    monkeypatch.setattr(tasks, "_beat_thread", None)
    tasks._beat_heartbeat_on_send(sender="configsync.tasks.sync_peer")
    assert heartbeat_read(role="beat") is None  # not beat: nothing

    seen: list[float | None] = []

    def beat() -> None:
        tasks._beat_heartbeat_on_start(sender=None)
        seen.append(heartbeat_read(role="beat"))
        heartbeat_record(role="beat", at=1.0)  # long ago
        tasks._beat_heartbeat_on_send(sender="configsync.tasks.heartbeat")
        seen.append(heartbeat_read(role="beat"))

    thread = threading.Thread(target=beat)
    thread.start()
    thread.join(timeout=30)
    assert seen[0] is not None and seen[1] is not None and seen[1] > 1.0
    heartbeat_record(role="beat", at=1.0)
    tasks._beat_heartbeat_on_send(sender="configsync.tasks.sync_peer")  # another thread
    assert heartbeat_read(role="beat") == 1.0


# --- the broker that health checks is whichever is configured --------------------------------


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def broker_url() -> Iterator[Any]:
    saved = celery_app.conf.broker_url, celery_app.conf.broker_transport_options

    def use(url: str) -> None:
        celery_app.conf.broker_url = url
        celery_app.conf.broker_transport_options = {}

    yield use
    celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved


@pytest.mark.skipif(not rabbitmq_answers(), reason="RabbitMQ does not answer on 127.0.0.1:5672")
def test_health_checks_rabbitmq_when_it_is_the_broker(client, settings: Any, broker_url) -> None:
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
    broker_url(settings.CELERY_BROKER_URL)
    body = client.get("/api/v1/health").json()
    assert body["components"]["broker"] == {"ok": True, "transport": "amqp"}


def test_a_rabbitmq_broker_that_does_not_answer_is_503_without_its_url(
    client, settings: Any, broker_url
) -> None:
    settings.CELERY_BROKER_URL = "amqp://guest:sk-CANARY-amqp@127.0.0.1:9//"
    broker_url(settings.CELERY_BROKER_URL)
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    broker = response.json()["components"]["broker"]
    assert broker["ok"] is False and broker["transport"] == "amqp"
    assert "CANARY" not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()
