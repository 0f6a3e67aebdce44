"""``GET /metrics``: per peer and transport, durations in seconds, reveals, the .env bridge,
lookups, the build; and the structured log line of every sync run."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import generate_latest

from configsync.actor import ENVBRIDGE, acting
from configsync.lookup import lookup_cache
from configsync.metrics import registry
from configsync.models import AuditEvent, Peer, PeerCheckpoint, ReplicatedRecord, SyncRun
from configsync.replication.selectors.feed import feed_last_cursor
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.services.audit import audit_record
from configsync.services.system_config import system_config_set
from tests.factories import CANARY_SECRET, PeerFactory

pytestmark = pytest.mark.django_db


def _run(peer: Peer, *, ok: bool, seconds: float, error: str = "") -> SyncRun:
    started = timezone.now() - timedelta(minutes=5)
    run = SyncRun.objects.create(peer=peer, ok=ok, error=error, pulled=3, pushed=2, conflicts=1)
    SyncRun.objects.filter(pk=run.pk).update(
        started_at=started, finished_at=started + timedelta(seconds=seconds)
    )
    return run


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` (labels in any order; all must match)."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    raise AssertionError(f"no sample {name}{labels}")


def test_runs_failures_and_durations_per_peer_and_transport(client) -> None:
    peer = PeerFactory(name="cloud", base_url="http://127.0.0.1:9")
    _run(peer, ok=True, seconds=0.2)
    _run(peer, ok=True, seconds=3)
    _run(peer, ok=False, seconds=45, error=f"TransportError: {CANARY_SECRET}")
    text = client.get("/metrics").content.decode()
    labels = {"peer": "cloud", "transport": "http"}
    assert _sample(text, "configsync_sync_runs_total", outcome="ok", **labels) == 2
    assert _sample(text, "configsync_sync_runs_total", outcome="error", **labels) == 1
    assert _sample(text, "configsync_sync_failures_total", **labels) == 1
    assert _sample(text, "configsync_changes_applied_total", **labels) == 9
    assert _sample(text, "configsync_conflicts_detected_total", **labels) == 3
    # a histogram in seconds: cumulative buckets, count and sum
    assert _sample(text, "configsync_sync_duration_seconds_bucket", le="0.1", **labels) == 0
    assert _sample(text, "configsync_sync_duration_seconds_bucket", le="0.25", **labels) == 1
    assert _sample(text, "configsync_sync_duration_seconds_bucket", le="5.0", **labels) == 2
    assert _sample(text, "configsync_sync_duration_seconds_bucket", le="30.0", **labels) == 2
    assert _sample(text, "configsync_sync_duration_seconds_bucket", le="60.0", **labels) == 3
    assert _sample(text, "configsync_sync_duration_seconds_bucket", le="+Inf", **labels) == 3
    assert _sample(text, "configsync_sync_duration_seconds_count", **labels) == 3
    assert _sample(text, "configsync_sync_duration_seconds_sum", **labels) == pytest.approx(48.2)
    assert CANARY_SECRET not in text
    assert "127.0.0.1" not in text


def test_a_run_whose_clock_went_back_adds_no_negative_duration(client) -> None:
    peer = PeerFactory(name="cloud", base_url="http://127.0.0.1:9")
    _run(peer, ok=True, seconds=2)
    _run(peer, ok=True, seconds=-30)  # the wall clock was set back while it ran
    text = client.get("/metrics").content.decode()
    labels = {"peer": "cloud", "transport": "http"}
    assert _sample(text, "configsync_sync_runs_total", outcome="ok", **labels) == 2
    assert _sample(text, "configsync_sync_duration_seconds_count", **labels) == 1
    assert _sample(text, "configsync_sync_duration_seconds_sum", **labels) == pytest.approx(2)


def test_last_success_age_lag_skew_and_disabled_peers(client) -> None:
    peer = PeerFactory(name="cloud")
    PeerFactory(name="idle", enabled=False)
    run = _run(peer, ok=True, seconds=1)
    SyncRun.objects.filter(pk=run.pk).update(skew_ms=1500)
    text = client.get("/metrics").content.decode()
    age = _sample(text, "configsync_sync_last_success_age_seconds", peer="cloud", transport="http")
    assert 4 * 60 < age < 60 * 60  # finished about five minutes ago; seconds, not ms
    assert (
        _sample(text, "configsync_sync_clock_skew_seconds", peer="cloud", transport="http") == 1.5
    )
    assert _sample(text, "configsync_peer_enabled", peer="idle", transport="http") == 0
    assert _sample(text, "configsync_peer_enabled", peer="cloud", transport="http") == 1
    assert _sample(text, "configsync_sync_lag_changes", peer="cloud", transport="http") == 0
    assert not re.search(r'configsync_sync_lag_changes\{[^}]*peer="idle"', text)
    assert _sample(text, "configsync_conflicts_open") == 0


def test_reveals_and_env_bridge_changes_from_the_audit_trail(client) -> None:
    audit_record(
        events=[
            AuditEvent(actor="user:ann", via="admin", action="reveal", node_id="n"),
            AuditEvent(actor="user:ann", via="admin", action="reveal", node_id="n"),
            AuditEvent(actor="api-key:k", via="api", action="reveal", node_id="n"),
        ]
    )
    with acting(via=ENVBRIDGE):
        system_config_set(key="FROM_ENV", value="plain-value")
    text = client.get("/metrics").content.decode()
    assert _sample(text, "configsync_reveals_total", via="admin") == 2
    assert _sample(text, "configsync_reveals_total", via="api") == 1
    assert _sample(text, "configsync_envbridge_changes_total", action="create") == 1
    assert "FROM_ENV" not in text
    assert "plain-value" not in text


def _lookups() -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {r: _sample(text, "configsync_lookups_total", result=r) for r in ("hit", "miss")}


def test_lookups_count_hits_and_misses_and_the_hit_ratio(client) -> None:
    before = _lookups()
    lookup_cache.get("metrics-test", "k", lambda key: "blue")  # a miss ...
    lookup_cache.get("metrics-test", "k", lambda key: "blue")  # ... then hits
    lookup_cache.get("metrics-test", "k", lambda key: "blue")
    after = _lookups()
    assert after["miss"] == before["miss"] + 1
    assert after["hit"] == before["hit"] + 2
    text = client.get("/metrics").content.decode()
    counted = {r: _sample(text, "configsync_lookups_total", result=r) for r in ("hit", "miss")}
    ratio = _sample(text, "configsync_lookup_cache_hit_ratio")
    assert ratio == pytest.approx(counted["hit"] / (counted["hit"] + counted["miss"]))
    assert 0 < ratio < 1
    assert "blue" not in text


def test_build_info_names_the_version(client) -> None:
    text = client.get("/metrics").content.decode()
    match = re.search(r'configsync_build_info\{version="([^"]+)"\} 1\.0', text)
    assert match is not None
    assert match.group(1)


def test_every_sync_run_logs_one_structured_line(caplog) -> None:
    peer = PeerFactory(name="deadpeer", base_url="http://127.0.0.1:9")
    logger = "configsync.replication.services.cycle"
    with caplog.at_level(logging.INFO, logger=logger), pytest.raises(SyncCycleError):
        sync_cycle(peer_id=peer.pk)
    lines = [r for r in caplog.records if r.getMessage().startswith("sync run ")]
    assert len(lines) == 1
    record = lines[0]
    message = record.getMessage()
    assert "peer=deadpeer transport=http outcome=error" in message
    assert "error_class=SyncCycleError" not in message  # the cause's class, not the wrapper's
    assert re.search(r"error_class=\w+Error", message)
    assert re.search(r"duration_ms=\d+ duration_seconds=[\d.]+", message)
    assert record.levelno == logging.INFO
    extra = record.__dict__
    assert extra["sync_peer"] == "deadpeer"
    assert extra["sync_transport"] == "http"
    assert extra["sync_outcome"] == "error"
    assert extra["sync_pulled"] == 0
    assert extra["sync_run_id"] == SyncRun.objects.get(peer=peer).pk
    assert "127.0.0.1" not in message


def _records(count: int) -> None:
    for number in range(count):
        system_config_set(key=f"METRICS_{number}", value="plain-value")


def test_lag_is_per_peer_and_a_scrape_costs_the_same_for_one_peer_or_many(
    client, django_assert_max_num_queries
) -> None:
    _records(3)
    last = ReplicatedRecord.objects.order_by("-seq").values_list("seq", flat=True)[0]
    caught_up = PeerFactory(name="caught-up")
    PeerCheckpoint.objects.create(
        peer=caught_up, direction=PeerCheckpoint.Direction.PUSH, cursor=feed_last_cursor()
    )
    halfway = PeerFactory(name="halfway")
    PeerCheckpoint.objects.create(
        peer=halfway, direction=PeerCheckpoint.Direction.PUSH, cursor=str(last - 1)
    )
    for peer in (caught_up, halfway):
        run = _run(peer, ok=True, seconds=1)
        SyncRun.objects.filter(pk=run.pk).update(skew_ms=250)
    with CaptureQueriesContext(connection) as two:
        text = client.get("/metrics").content.decode()
    labels = {"transport": "http"}
    assert _sample(text, "configsync_sync_lag_changes", peer="caught-up", **labels) == 0
    assert _sample(text, "configsync_sync_lag_changes", peer="halfway", **labels) == 1
    assert _sample(text, "configsync_sync_clock_skew_seconds", peer="halfway", **labels) == 0.25
    for number in range(12):
        peer = PeerFactory(name=f"many{number}")
        _run(peer, ok=number % 2 == 0, seconds=number)
    with django_assert_max_num_queries(len(two)):
        text = client.get("/metrics").content.decode()
    assert _sample(text, "configsync_sync_lag_changes", peer="many11", **labels) == last
    assert _sample(text, "configsync_sync_runs_total", peer="many11", outcome="error", **labels)
