"""Skew and clocks out of bounds are never silent: status, API, admin, health, CLI and logs.

A node learns its own clock is wrong from its peers (every answer carries their clock) and from
its stored HLC (a clock set back after running ahead still issues timestamps ahead). Held
(quarantined) items are counted per cycle, and conflicts clock skew may have decided show as
such everywhere conflicts are listed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from configsync.models import Conflict, NodeClock, Peer, SyncRun
from configsync.replication.hlc import physical_now_ms
from configsync.replication.selectors.status import sync_status
from configsync.replication.services import cycle as sync_service
from configsync.replication.services.cycle import sync_cycle
from configsync.replication.transports.base import PushResult
from configsync.services.health import heartbeat_record
from configsync.services.node import node_id
from configsync.services.system_config import system_config_set
from tests.factories import PeerFactory
from tests.support.replication import REMOTE, remote_change, stamp
from tests.support.scripted_peer import ScriptedPeer

pytestmark = pytest.mark.django_db

MINUTE = 60_000


@pytest.fixture
def peer() -> Peer:
    return PeerFactory(name="cloud", node_id=REMOTE)


def set_stored_clock_ahead(ms: int) -> None:
    """As after this machine's clock ran ``ms`` ahead, issued timestamps, and was set back."""
    system_config_set(key="ANY", value="1")
    NodeClock.objects.update(last_wall_ms=physical_now_ms() + ms)


def test_the_default_allowed_skew_is_one_minute(settings: Any) -> None:
    del settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS
    from configsync.conf import app_settings

    assert app_settings.MAX_CLOCK_SKEW_SECONDS == 60
    assert app_settings.SKEW_WARNING_SECONDS == 2


def test_a_peer_four_minutes_ahead_is_not_reported_ok(peer: Peer, admin_client: Client) -> None:
    SyncRun.objects.create(peer=peer, ok=True, skew_ms=240_004)
    report = sync_status(node=node_id())
    cloud = report.peers[0]
    assert cloud.clock_state == "out_of_bounds" and cloud.clock_skew_ms == 240_004
    assert any("peer cloud's clock is 240.0 s ahead" in w for w in report.warnings)
    body = admin_client.get("/api/v1/sync/status").json()
    assert body["peers"][0]["clock_state"] == "out_of_bounds"
    assert any("240.0 s ahead" in w for w in body["warnings"])
    page = admin_client.get(reverse("admin:configsync_peer_changelist")).content.decode()
    assert "+240004 ms — OUT OF BOUNDS" in page


def test_a_small_skew_above_the_threshold_is_a_warning(peer: Peer, cli: Any) -> None:
    SyncRun.objects.create(peer=peer, ok=True, skew_ms=-5_000)
    report = sync_status(node=node_id())
    assert report.peers[0].clock_state == "warning" and report.clock.state == "warning"
    assert any("clock skew with peer cloud: -5000 ms" in w for w in report.warnings)
    out = cli("status").out
    assert out.startswith("WARNING: clock: clock skew with peer cloud")
    SyncRun.objects.create(peer=peer, ok=True, skew_ms=800)
    assert (
        sync_status(node=node_id()).warnings == []
        and sync_status(node=node_id()).peers[0].clock_state == "ok"
    )


def test_a_clock_set_back_after_running_ahead_is_out_of_bounds_everywhere(
    peer: Peer, client: Client, admin_client: Client, cli: Any
) -> None:
    set_stored_clock_ahead(20 * MINUTE)
    report = sync_status(node=node_id())
    assert report.clock.state == "out_of_bounds"
    assert report.clock.hlc_ahead_ms > 19 * MINUTE
    assert report.warnings[0].startswith("CLOCK OUT OF BOUNDS: this node's clock issues")
    assert "NTP" in report.clock.recovery and "about 19" in report.clock.recovery

    health = client.get("/api/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "degraded", health.json()
    assert health.json()["components"]["clock"]["ok"] is False
    strict = client.get("/api/v1/health?strict=1")
    assert strict.status_code == 503 and strict.json()["status"] == "error"
    assert "cloud" not in strict.content.decode()  # health is open: figures, no peer names

    out = cli("status").out
    assert out.startswith("WARNING: CLOCK OUT OF BOUNDS") and "Recovery: Fix this machine" in out
    data = json.loads(cli("status", "--json").out)
    assert data["clock"]["state"] == "out_of_bounds"
    page = admin_client.get(reverse("admin:configsync_peer_changelist")).content.decode()
    assert "OUT OF BOUNDS" in page


def test_health_stays_ok_with_a_sound_clock(client: Client, settings: Any, tmp_path: Any) -> None:
    settings.CONFIGSYNC_VAR_DIR = tmp_path  # heartbeats of this test's own (without Redis)
    heartbeat_record(role="worker")  # a worker and beat that run (strict checks them too)
    heartbeat_record(role="beat")
    system_config_set(key="ANY", value="1")
    for path in ("/api/v1/health", "/api/v1/health?strict=1"):
        response = client.get(path)
        assert response.status_code == 200 and response.json()["status"] == "ok"


def test_a_cycle_learns_from_the_peer_and_logs_one_error_naming_the_recovery(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    remote = ScriptedPeer(node=REMOTE)
    remote.clock_ms = physical_now_ms() - 20 * MINUTE  # our clock runs 20 minutes ahead of it
    with caplog.at_level(logging.ERROR, logger="configsync.replication.services.cycle"):
        result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert result.skew_ms is not None and result.skew_ms < -19 * MINUTE
    assert result.clock_ahead_ms is not None and result.clock_ahead_ms > 19 * MINUTE
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "CLOCK OUT OF BOUNDS" in errors[0].getMessage()
    assert "ahead of peer cloud's" in errors[0].getMessage()
    assert "Recovery: Fix this machine's clock" in errors[0].getMessage()


def test_a_stored_clock_ahead_is_logged_even_when_the_peer_agrees_on_time(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    set_stored_clock_ahead(20 * MINUTE)
    remote = ScriptedPeer(node=REMOTE)
    remote.clock_ms = physical_now_ms()
    with caplog.at_level(logging.ERROR, logger="configsync.replication.services.cycle"):
        sync_cycle(peer_id=peer.pk, transport=remote)
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "ahead of its physical clock" in error.getMessage()


class Quarantines(ScriptedPeer):
    """A peer (new release) that sets aside items it cannot store instead of refusing the batch."""

    def push(self, changes: list[dict[str, Any]]) -> PushResult:
        self.pushed.append(changes)
        results = []
        for i, change in enumerate(changes):
            item = {"index": i, "model": change["model"], "key": change["key"]}
            if change["key"].startswith("HELD"):
                item |= {"status": "quarantined", "reason": "clock skew: 1200000 ms ahead"}
            elif change["key"].startswith("BAD"):
                item |= {"status": "quarantined", "reason": "value: invalid (invalid)"}
            else:
                item["status"] = "applied"
            results.append(item)
        return PushResult(node=self.node, results=results, clock_ms=physical_now_ms())


def test_items_the_peer_quarantines_are_counted_not_garbage(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    for key in ("OK", "HELD_1", "BAD_1"):
        system_config_set(key=key, value="1")
    with caplog.at_level(logging.ERROR, logger="configsync.replication.services.cycle"):
        result = sync_cycle(peer_id=peer.pk, transport=Quarantines(node=REMOTE))
    assert result.ok and result.pushed == 1
    assert result.quarantined == 2 and result.held_for_skew == 1
    assert SyncRun.objects.get().quarantined == 2
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "peer cloud holds 1 of this cycle's changes for clock skew" in error.getMessage()
    report = sync_status(node=node_id())
    assert report.peers[0].quarantined_last_run == 2
    assert any("set aside 2 change(s)" in w for w in report.warnings)


def test_the_measured_skew_reaches_changes_apply_on_pull(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int | None] = []
    real = sync_service.changes_apply

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs.get("source_skew_ms"))
        return real(**kwargs)

    monkeypatch.setattr(sync_service, "changes_apply", spy)
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("K")])
    remote.clock_ms = physical_now_ms() + 30_000
    sync_cycle(peer_id=peer.pk, push=False, transport=remote)
    assert seen and seen[0] is not None and 28_000 < seen[0] < 32_000
    # A version stamped ahead of our clock counts as the source's error even when its
    # physical clock agrees with ours now (its clock was set back after stamping it).
    seen.clear()
    ahead = remote_change("L", hlc=stamp(REMOTE, wall=physical_now_ms() + 40_000))
    remote = ScriptedPeer(node=REMOTE, feed=[ahead])
    remote.clock_ms = physical_now_ms()
    Peer.objects.filter(pk=peer.pk).update(node_id="")
    other = PeerFactory(name="other", base_url="http://127.0.0.1:8")
    sync_cycle(peer_id=other.pk, push=False, transport=remote)
    assert seen and seen[0] is not None and 38_000 < seen[0] < 41_000


def _conflict(*, skew_affected: bool) -> Conflict:
    version = {"hlc": stamp(REMOTE), "origin": REMOTE, "deleted": False, "data": {}}
    return Conflict.objects.create(
        model_label="configsync.systemconfig",
        natural_key="RACE",
        source="cloud",
        local_version=version,
        remote_version={**version, "hlc": stamp("node-x")},
        winner="remote",
        skew_affected=skew_affected,
    )


def test_skew_affected_conflicts_are_shown_everywhere(admin_client: Client, cli: Any) -> None:
    conflict = _conflict(skew_affected=True)
    [listed] = admin_client.get("/api/v1/sync/conflicts/").json()
    assert listed["skew_affected"] is True
    assert json.loads(cli("conflicts", "--json").out)[0]["skew_affected"] is True
    assert "SKEW-AFFECTED" in cli("conflicts").out
    page = admin_client.get(reverse("admin:configsync_conflict_changelist")).content.decode()
    assert "skew_affected" in page or "clock skew may have decided it" in page
    Conflict.objects.filter(pk=conflict.pk).update(skew_affected=False)
    assert "SKEW-AFFECTED" not in cli("conflicts").out
