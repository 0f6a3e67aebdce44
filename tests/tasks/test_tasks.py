"""Celery tasks of replication scheduling, the beat schedule and the push-on-write receivers.

Tasks run in-process with ``Task.apply`` (eagerly, retries included) against the real engine
and real HTTP servers on 127.0.0.1. Only the broker hand-off (``apply_async``/``delay``) is
replaced where a test checks *what would be enqueued*; the multi-node tests run the real thing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from configsync import tasks
from configsync.locks import named_lock
from configsync.models import Peer, SyncRun
from configsync.replication.services.sync import push_flag_raised, push_flag_take
from configsync.services.system_config import system_config_set
from tests.factories import PeerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


class _Recorder(BaseHTTPRequestHandler):
    status = 204
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.received.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def callback_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received = []  # type: ignore[attr-defined]
    server.status = 204  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hook?token=sk-CANARY-hook"


# --- beat schedule ---------------------------------------------------------------------------


def test_beat_runs_the_sync_every_interval() -> None:
    with override_settings(CONFIGSYNC_SYNC_INTERVAL_SECONDS=30):
        entry = tasks.beat_schedule()["configsync-sync-all-peers"]
    assert entry["task"] == "configsync.tasks.sync_all_peers"
    assert entry["schedule"] == timedelta(seconds=30)


def test_beat_runs_at_the_matrix_shortest_interval() -> None:
    overrides = {
        "templates": {"interval_seconds": 10},
        "projects": {"interval_seconds": 5, "sync_enabled": False},  # off: does not count
        "system_config": {"interval_seconds": 300},  # longer: a floor, the beat stays at 30
    }
    with override_settings(
        CONFIGSYNC_SYNC_INTERVAL_SECONDS=30, CONFIGSYNC_SYNC_STRATEGIES=overrides
    ):
        entry = tasks.beat_schedule()["configsync-sync-all-peers"]
    assert entry["schedule"] == timedelta(seconds=10)


@override_settings(CONFIGSYNC_SYNC_INTERVAL_SECONDS=0)
def test_interval_zero_disables_the_periodic_sync() -> None:
    assert "configsync-sync-all-peers" not in tasks.beat_schedule()


# --- sync_all_peers / sync_peer --------------------------------------------------------------


@override_settings(CONFIGSYNC_PEERS=["cloud=http://127.0.0.1:9", "edge=http://127.0.0.1:8"])
def test_sync_all_peers_seeds_and_enqueues_every_enabled_peer(
    django_capture_on_commit_callbacks,
) -> None:
    PeerFactory(name="off", base_url="http://127.0.0.1:7", enabled=False)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        peer_ids = tasks.sync_all_peers.apply().get()
    names = sorted(Peer.objects.filter(pk__in=peer_ids).values_list("name", flat=True))
    assert names == ["cloud", "edge"]
    assert len(callbacks) == 2


def test_sync_all_peers_keeps_tombstones_when_the_peers_cannot_be_seeded(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer the setting names but the database lacks has not acknowledged any tombstone."""
    from configsync.models import ReplicatedRecord
    from configsync.replication.services.peers import TOMBSTONE_MIN_AGE
    from configsync.services.system_config import system_config_delete

    system_config_set(key="GONE", value="1")
    system_config_delete(key="GONE")
    old = timezone.now() - TOMBSTONE_MIN_AGE - timedelta(minutes=1)
    ReplicatedRecord.objects.filter(deleted=True).update(updated_at=old)
    settings.CONFIGSYNC_PEERS = ["cloud=http://127.0.0.1:9", "bad name=http://u:sk-CANARY@x"]
    with caplog.at_level(logging.ERROR, logger="configsync.tasks"):
        assert tasks.sync_all_peers.apply().get() == []
    assert ReplicatedRecord.objects.filter(natural_key="GONE", deleted=True).exists()
    assert "not seeded" in caplog.text and "CANARY" not in caplog.text
    settings.CONFIGSYNC_PEERS = []
    tasks.sync_all_peers.apply().get()
    assert not ReplicatedRecord.objects.filter(natural_key="GONE").exists()


def test_sync_peer_skips_a_peer_that_another_worker_holds() -> None:
    peer = PeerFactory(name="cloud")
    with named_lock(f"sync-peer-{peer.pk}", blocking=False) as held:
        assert held
        assert tasks.sync_peer.apply(args=[peer.pk]).get() is False
    assert not SyncRun.objects.filter(peer=peer).exists()


def test_sync_peer_of_a_missing_or_disabled_peer_does_nothing() -> None:
    peer = PeerFactory(name="cloud", enabled=False)
    assert tasks.sync_peer.apply(args=[peer.pk]).get() is False
    assert tasks.sync_peer.apply(args=[peer.pk + 1000]).get() is False
    assert not SyncRun.objects.exists()


def test_a_down_peer_is_retried_with_backoff_then_logged_never_raised(caplog) -> None:
    peer = PeerFactory(name="cloud")
    system_config_set(key="PENDING", value="x")
    with caplog.at_level(logging.WARNING, logger="configsync.tasks"):
        result = tasks.sync_peer.apply(args=[peer.pk])
    assert result.successful() or result.state == "RETRY"
    runs = SyncRun.objects.filter(peer=peer)
    assert runs.count() == tasks.SYNC_MAX_RETRIES + 1
    assert not runs.filter(ok=True).exists()
    assert all(run.error for run in runs)
    messages = [r.getMessage() for r in caplog.records]
    assert any("peer cloud failed" in m and "giving up" in m for m in messages)
    assert sum("retry" in m for m in messages) == tasks.SYNC_MAX_RETRIES


def test_backoff_grows_and_is_capped() -> None:
    assert all(1 <= tasks._backoff(0) <= 3 for _ in range(20))
    assert all(tasks._backoff(50) <= tasks.SYNC_BACKOFF_MAX_SECONDS + 1 for _ in range(20))
    assert max(tasks._backoff(6) for _ in range(50)) > 2


# --- push on write ---------------------------------------------------------------------------


def test_a_local_write_enqueues_its_peers_push_at_once_and_a_raised_flag_coalesces(
    django_capture_on_commit_callbacks,
) -> None:
    cloud = PeerFactory(name="cloud")
    PeerFactory(name="off", base_url="http://127.0.0.1:8", enabled=False)
    with (
        mock.patch.object(tasks.sync_peer, "apply_async") as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        system_config_set(key="FIRST", value="1")
        system_config_set(key="SECOND", value="2")  # the flag is raised: its push is queued
    assert enqueue.call_count == 1
    assert enqueue.call_args.kwargs == {"args": [cloud.pk], "kwargs": {"pull": False}}
    # A pusher took the flag (before reading the feed): the next write enqueues again.
    assert push_flag_take(cloud.pk)
    with (
        mock.patch.object(tasks.sync_peer, "apply_async") as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        system_config_set(key="THIRD", value="3")
    assert enqueue.call_count == 1


def test_a_push_the_broker_refused_is_asked_again_by_the_next_write(
    django_capture_on_commit_callbacks, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = PeerFactory(name="cloud")
    with (
        mock.patch.object(tasks.sync_peer, "apply_async", side_effect=OSError("down")),
        django_capture_on_commit_callbacks(execute=True),
        caplog.at_level(logging.WARNING, logger="configsync.tasks"),
    ):
        system_config_set(key="FIRST", value="1")  # committed, whatever the broker says
    assert "next beat carries it" in caplog.text
    assert not push_flag_raised(cloud.pk)
    with (
        mock.patch.object(tasks.sync_peer, "apply_async") as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        system_config_set(key="SECOND", value="2")
    assert enqueue.call_count == 1


def test_no_push_without_peers(django_capture_on_commit_callbacks) -> None:
    with (
        mock.patch.object(tasks.sync_peer, "apply_async") as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        system_config_set(key="ALONE", value="1")
    assert enqueue.call_count == 0


def test_remote_changes_are_not_pushed_back() -> None:
    from configsync.signals import change_committed

    PeerFactory(name="cloud")
    with mock.patch.object(tasks.sync_peer, "apply_async") as enqueue:
        change_committed.send(
            sender=None,
            model_label="configsync.systemconfig",
            natural_key="K",
            seq=1,
            deleted=False,
            local=False,
        )
    assert enqueue.call_count == 0


def test_push_to_peers_enqueues_a_push_only_cycle_per_enabled_peer(
    django_capture_on_commit_callbacks,
) -> None:
    cloud = PeerFactory(name="cloud")
    PeerFactory(name="off", base_url="http://127.0.0.1:8", enabled=False)
    with (
        mock.patch.object(tasks.sync_peer, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert tasks.push_to_peers.apply().get() == [cloud.pk]
    delay.assert_called_once_with(cloud.pk, pull=False)


# --- data callback ---------------------------------------------------------------------------


def test_each_change_is_announced_to_the_data_callback_with_ids_only(
    callback_server: ThreadingHTTPServer, django_capture_on_commit_callbacks, canary: str
) -> None:
    with (
        override_settings(CONFIGSYNC_DATA_CALLBACK_URL=_url(callback_server)),
        mock.patch.object(tasks.notify_data_callback, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        system_config_set(key="HOOKED", value=canary, is_sensitive=True)
    assert delay.call_count == 1
    model_label, natural_key, seq, deleted = delay.call_args.args
    assert (model_label, natural_key, deleted) == ("configsync.systemconfig", "HOOKED", False)
    assert canary not in repr(delay.call_args)

    with override_settings(CONFIGSYNC_DATA_CALLBACK_URL=_url(callback_server)):
        assert tasks.notify_data_callback.apply(args=delay.call_args.args).get() is True
    (body,) = callback_server.received  # type: ignore[attr-defined]
    assert body["model"] == "configsync.systemconfig"
    assert body["natural_key"] == "HOOKED"
    assert body["seq"] == seq and body["deleted"] is False
    assert canary not in json.dumps(body)


def test_a_failing_callback_is_retried_then_given_up_without_leaking_its_url(
    callback_server: ThreadingHTTPServer, caplog
) -> None:
    callback_server.status = 500  # type: ignore[attr-defined]
    with (
        override_settings(CONFIGSYNC_DATA_CALLBACK_URL=_url(callback_server)),
        caplog.at_level(logging.WARNING, logger="configsync.tasks"),
    ):
        tasks.notify_data_callback.apply(args=["configsync.systemconfig", "K", 3, True])
    assert len(callback_server.received) == tasks.CALLBACK_MAX_RETRIES + 1  # type: ignore[attr-defined]
    assert any("undelivered" in r.getMessage() for r in caplog.records)
    assert "CANARY" not in caplog.text


def test_no_callback_url_means_no_task(django_capture_on_commit_callbacks) -> None:
    with (
        mock.patch.object(tasks.notify_data_callback, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        system_config_set(key="QUIET", value="1")
    assert delay.call_count == 0


@override_settings(CONFIGSYNC_PEERS=["cloud=http://127.0.0.1:9"])
def test_push_to_peers_seeds_configured_peers_first(django_capture_on_commit_callbacks) -> None:
    with (
        mock.patch.object(tasks.sync_peer, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        (peer_id,) = tasks.push_to_peers.apply().get()
    assert Peer.objects.get(pk=peer_id).name == "cloud"
    delay.assert_called_once_with(peer_id, pull=False)


def test_a_starting_worker_syncs_at_once() -> None:
    from celery.signals import worker_ready

    with mock.patch.object(tasks.sync_all_peers, "delay") as delay:
        worker_ready.send(sender=None)
    assert delay.call_count == 1
