"""``GET /api/v1/health``, ``GET /api/v1/sync/status``, ``POST /api/v1/sync/trigger``, ``/metrics``
and ``configsync status``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from configsync.models import (
    Conflict,
    NodeClock,
    Peer,
    PeerCheckpoint,
    ReplicatedRecord,
    SyncRun,
)
from configsync.services.health import heartbeat_record
from settings.celery import app as celery_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer() -> Peer:
    return Peer.objects.create(name="cloud", base_url="http://127.0.0.1:9/")


def _record(seq: int, *, received_from: str = "") -> ReplicatedRecord:
    return ReplicatedRecord.objects.create(
        model_label="configsync.systemconfig",
        natural_key=f"KEY_{seq}",
        hlc=f"{1700000000000 + seq}:0:node-test",
        origin_node=received_from or "node-test",
        seq=seq,
        received_from=received_from,
        data={"key": f"KEY_{seq}"},
    )


def _run(
    peer: Peer, *, ok: bool, minutes_ago: int, error: str = "", skew: int | None = None
) -> None:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    run = SyncRun.objects.create(peer=peer, ok=ok, error=error, skew_ms=skew, pulled=2, pushed=1)
    SyncRun.objects.filter(pk=run.pk).update(started_at=at, finished_at=at)


# --- health ----------------------------------------------------------------------------------


def test_health_is_open_and_reports_each_component(client, settings, tmp_path) -> None:
    settings.CONFIGSYNC_VAR_DIR = tmp_path  # heartbeats of this test's own (without Redis)
    heartbeat_record(role="worker")
    heartbeat_record(role="beat")
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"database", "cache", "broker", "clock", "worker", "beat"}
    assert all(component["ok"] for component in body["components"].values())


@pytest.fixture
def broken_broker() -> Iterator[str]:
    """The Celery app pointed at a port where nothing listens (with a fake credential)."""
    url = "redis://:sk-CANARY-broker-password@127.0.0.1:9/0"
    saved = celery_app.conf.broker_url, celery_app.conf.broker_transport_options
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = {}
    try:
        yield url
    finally:
        celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved


def test_health_answers_503_when_the_broker_is_down_without_leaking_its_url(
    client, broken_broker: str
) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["components"]["broker"]["ok"] is False
    assert body["components"]["database"]["ok"] is True
    assert "CANARY" not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()


# --- status ----------------------------------------------------------------------------------


def test_status_requires_an_admin(client) -> None:
    assert client.get("/api/v1/sync/status").status_code in {401, 403}
    assert client.post("/api/v1/sync/trigger", {}).status_code in {401, 403}


def test_status_reports_each_peer(admin_client, peer: Peer) -> None:
    peer.node_id = "node-cloud"
    peer.save()
    # The admin user's own version (users replicate) is not part of this scene.
    ReplicatedRecord.objects.all().delete()
    NodeClock.objects.update(last_seq=0)
    Peer.objects.create(name="idle", base_url="http://127.0.0.1:8/", enabled=False)
    for seq in (1, 2, 3):
        _record(seq)
    _record(4, received_from="node-cloud")  # came from the peer: not owed back to it
    _record(5)
    PeerCheckpoint.objects.create(peer=peer, direction=PeerCheckpoint.Direction.PUSH, cursor="2")
    _run(peer, ok=True, minutes_ago=30, skew=40)
    _run(peer, ok=False, minutes_ago=20, error="TransportError: connection refused")
    _run(peer, ok=True, minutes_ago=10, skew=-15)
    _run(peer, ok=True, minutes_ago=5)
    Conflict.objects.create(
        model_label="configsync.systemconfig",
        natural_key="KEY_1",
        source="cloud",
        local_version={},
        remote_version={},
        winner="local",
    )

    response = admin_client.get("/api/v1/sync/status")

    assert response.status_code == 200
    body = response.json()
    assert body["last_seq"] == 5
    assert body["open_conflicts"] == 1
    assert [p["name"] for p in body["peers"]] == ["cloud", "idle"]
    cloud = body["peers"][0]
    assert cloud["changes_behind"] == 2  # seqs 3 and 5
    assert cloud["success_rate"] == 0.75
    assert cloud["recent_runs"] == 4
    assert cloud["last_run_ok"] is True
    assert cloud["last_error"] == "TransportError: connection refused"
    assert cloud["last_success_at"] > cloud["last_error_at"]
    assert cloud["open_conflicts"] == 1
    assert cloud["clock_skew_ms"] == -15
    idle = body["peers"][1]
    assert idle["enabled"] is False
    assert idle["last_run_ok"] is None and idle["success_rate"] is None
    assert idle["changes_behind"] == 5


def test_status_cli_json_and_text(peer: Peer) -> None:
    _run(peer, ok=False, minutes_ago=1, error="TransportError: timed out")
    out = StringIO()
    call_command("configsync", "status", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["peers"][0]["name"] == "cloud"
    assert report["peers"][0]["last_run_ok"] is False

    text = StringIO()
    call_command("configsync", "status", stdout=text)
    assert "peer cloud" in text.getvalue()
    assert "failing" in text.getvalue()
    assert "TransportError: timed out" in text.getvalue()


# --- trigger ---------------------------------------------------------------------------------


def test_trigger_enqueues_every_enabled_peer_on_commit(
    admin_client, peer: Peer, django_capture_on_commit_callbacks
) -> None:
    Peer.objects.create(name="idle", base_url="http://127.0.0.1:8/", enabled=False)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post("/api/v1/sync/trigger", {}, content_type="application/json")
    assert response.status_code == 202
    assert response.json() == {"enqueued": [{"id": peer.pk, "name": "cloud"}]}
    assert len(callbacks) == 1


def test_trigger_unknown_peer_is_404_and_enqueues_nothing(
    admin_client, peer: Peer, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            "/api/v1/sync/trigger", {"peer": "nope"}, content_type="application/json"
        )
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]
    assert callbacks == []


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_expose_counts_without_values(client, peer: Peer) -> None:
    _record(1)
    _run(peer, ok=True, minutes_ago=3, skew=7)
    _run(peer, ok=False, minutes_ago=2, error="TransportError: sk-CANARY-never-here")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'configsync_sync_runs_total{outcome="ok",peer="cloud",transport="http"} 1.0' in text
    assert 'configsync_sync_runs_total{outcome="error",peer="cloud",transport="http"} 1.0' in text
    assert 'configsync_changes_applied_total{peer="cloud",transport="http"} 4.0' in text
    assert 'configsync_sync_lag_changes{peer="cloud",transport="http"} 1.0' in text
    assert 'configsync_sync_clock_skew_milliseconds{peer="cloud"} 7.0' in text
    assert "configsync_feed_last_seq 1.0" in text
    assert "CANARY" not in text
    assert "127.0.0.1" not in text


@override_settings(CONFIGSYNC_DEPLOYMENT_MODE="LOCAL_R2")
def test_status_reports_the_configured_mode(admin_client) -> None:
    assert admin_client.get("/api/v1/sync/status").json()["deployment_mode"] == "LOCAL_R2"
