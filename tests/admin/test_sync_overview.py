"""The admin's sync health: index summary, sync overview, sync now, peer states, sync runs to
the millisecond, the conflict page side by side, and the deployment mode page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from configsync.models import (
    AuditEvent,
    Conflict,
    NodeIdentity,
    Peer,
    ReplicatedRecord,
    SyncRun,
    SystemConfig,
)
from configsync.replication.selectors.health import (
    BEHIND,
    DEGRADED,
    DISABLED,
    FAILING,
    HEALTHY,
    peer_health_state,
    sync_health,
)
from configsync.replication.selectors.mode import deployment_mode
from configsync.replication.selectors.status import peer_status, peer_statuses
from tests.factories import CANARY_SECRET, PeerFactory
from tests.support.conflicts import setting_conflict

pytestmark = pytest.mark.django_db


def body(response: Any) -> str:
    return response.content.decode()


def _run(peer: Peer, *, ok: bool, error: str = "", ms: int = 1234) -> SyncRun:
    started = timezone.now() - timedelta(minutes=3)
    run = SyncRun.objects.create(peer=peer, ok=ok, error=error)
    SyncRun.objects.filter(pk=run.pk).update(
        started_at=started, finished_at=started + timedelta(milliseconds=ms)
    )
    return SyncRun.objects.get(pk=run.pk)


def _in_step(peer: Peer) -> Peer:
    """Every record here came from ``peer``: nothing for it to acknowledge."""
    Peer.objects.filter(pk=peer.pk).update(node_id=f"{peer.name}-node")
    ReplicatedRecord.objects.update(received_from=f"{peer.name}-node")
    return Peer.objects.get(pk=peer.pk)


def _state(peer: Peer) -> str:
    return peer_health_state(peer_status(peer=peer))[0]


# --- states ----------------------------------------------------------------------------------


def test_peer_states_follow_runs_acknowledgements_and_the_switch() -> None:
    peer = PeerFactory(name="cloud")
    assert _state(peer) == BEHIND  # never synced
    _run(peer, ok=True)
    assert _state(peer) == HEALTHY
    _run(peer, ok=False, error="TransportError: connection refused")
    assert _state(peer) == FAILING
    _run(peer, ok=True)
    ReplicatedRecord.objects.create(
        model_label="configsync.systemconfig", natural_key="K", hlc="x", seq=1, data={}
    )
    assert _state(peer) == BEHIND  # a change it has not acknowledged
    Peer.objects.filter(pk=peer.pk).update(enabled=False)
    assert _state(Peer.objects.get(pk=peer.pk)) == DISABLED


def test_the_node_is_failing_when_every_active_peer_fails_and_degraded_when_some_do() -> None:
    node = NodeIdentity.objects.get().node_id
    assert sync_health(node=node).state == HEALTHY  # no peers
    first, second = PeerFactory(name="a"), PeerFactory(name="b")
    PeerFactory(name="off", enabled=False)
    _run(first, ok=False, error="TransportError: refused")
    _run(second, ok=True)
    health = sync_health(node=node)
    assert health.state == DEGRADED
    assert "failing: a" in health.reasons
    _run(second, ok=False, error="TransportError: refused")
    assert sync_health(node=node).state == FAILING


# --- index and overview ----------------------------------------------------------------------


def test_the_index_shows_node_mode_and_state_with_a_link_to_the_overview(
    admin_client: Client,
) -> None:
    peer = PeerFactory(name="deadpeer")
    _run(peer, ok=False, error="TransportError: connection refused")
    page = body(admin_client.get(reverse("admin:index")))
    assert NodeIdentity.objects.get().node_id in page
    assert deployment_mode() in page
    assert 'cs-state-failing"' in page  # the only peer fails
    assert "FAILING" in page
    assert reverse("admin:configsync_sync_overview") in page


def test_the_index_shows_no_sync_state_to_staff_who_may_not_see_peers(client: Client) -> None:
    user = get_user_model().objects.create_user("clerk", password="pw-test-only", is_staff=True)
    client.force_login(user)
    page = body(client.get(reverse("admin:index")))
    assert "cs-node-health" not in page
    assert client.get(reverse("admin:configsync_sync_overview")).status_code == 403


def test_the_overview_shows_every_peer_with_state_error_and_figures(admin_client: Client) -> None:
    dead = PeerFactory(name="deadpeer")
    for _ in range(3):
        _run(dead, ok=False, error=f"TransportError: peer deadpeer refused\nsk-{CANARY_SECRET}")
    good = PeerFactory(name="goodpeer")
    _run(good, ok=True)
    SyncRun.objects.filter(peer=good).update(skew_ms=42)
    PeerFactory(name="offpeer", enabled=False)
    setting_conflict("COLOUR", local="blue", remote="green", peer="deadpeer")
    page = body(admin_client.get(reverse("admin:configsync_sync_overview")))
    assert 'data-peer="deadpeer" data-state="failing"' in page
    # the conflict's local write (and the admin user) are changes goodpeer has not acknowledged
    assert 'data-peer="goodpeer" data-state="behind"' in page
    assert "2 change(s) not acknowledged yet" in page
    assert 'data-peer="offpeer" data-state="disabled"' in page
    assert "TransportError: peer deadpeer refused" in page
    assert CANARY_SECRET not in page  # only the error's first line
    assert "0% of the last 3" in page
    assert "100% of the last 1" in page
    assert "+42 ms" in page
    assert 'id="cs-open-conflicts">1<' in page
    assert "csrfmiddlewaretoken" in page  # the sync-now form
    assert "blue" not in page and "green" not in page


def test_sync_now_enqueues_the_trigger_on_commit(
    admin_client: Client, django_capture_on_commit_callbacks
) -> None:
    PeerFactory(name="cloud")
    PeerFactory(name="off", enabled=False)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(reverse("admin:configsync_sync_now"))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:configsync_sync_overview")
    assert len(callbacks) == 1  # the enabled peer only
    page = body(admin_client.get(response["Location"]))
    assert "Sync enqueued with cloud." in page


def test_sync_now_refuses_get_an_unknown_peer_and_users_who_may_not_change_peers(
    admin_client: Client, client: Client, django_capture_on_commit_callbacks
) -> None:
    PeerFactory(name="cloud")
    assert admin_client.get(reverse("admin:configsync_sync_now")).status_code == 405
    user = get_user_model().objects.create_user("clerk", password="pw-test-only", is_staff=True)
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(reverse("admin:configsync_sync_now"), {"peer": "nope"})
        assert "No such peer" in body(admin_client.get(response["Location"]))
        assert client.post(reverse("admin:configsync_sync_now")).status_code == 403
    assert callbacks == []


def test_sync_now_needs_the_csrf_token() -> None:
    PeerFactory(name="cloud")
    user = get_user_model().objects.create_superuser("root", password="pw-test-only")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("admin:configsync_sync_now")).status_code == 403


# --- peers and runs --------------------------------------------------------------------------


def test_the_peer_list_shows_the_state_not_only_the_enabled_tick(admin_client: Client) -> None:
    dead = PeerFactory(name="deadpeer")
    _run(dead, ok=False, error="TransportError: refused")
    good = PeerFactory(name="goodpeer")
    _run(good, ok=True)
    _in_step(good)
    page = body(admin_client.get(reverse("admin:configsync_peer_changelist")))
    assert 'cs-state-failing"' in page
    assert 'cs-state-healthy"' in page
    assert reverse("admin:configsync_sync_overview") in page


def test_the_run_list_shows_the_error_and_times_to_the_millisecond(admin_client: Client) -> None:
    run = _run(PeerFactory(name="cloud"), ok=False, error="TransportError: refused", ms=1234)
    page = body(admin_client.get(reverse("admin:configsync_syncrun_changelist")))
    assert "TransportError: refused" in page
    assert "1,234 ms" in page
    started = timezone.localtime(run.started_at)
    assert started.strftime("%H:%M:%S.") + f"{started.microsecond // 1000:03d}" in page
    detail = body(admin_client.get(reverse("admin:configsync_syncrun_change", args=[run.pk])))
    assert "1,234 ms" in detail


# --- conflicts -------------------------------------------------------------------------------


def test_a_plain_conflict_shows_both_values_times_and_origins(admin_client: Client) -> None:
    conflict = setting_conflict("COLOUR", local="blue", remote="green", peer="far-node")
    page = body(admin_client.get(reverse("admin:configsync_conflict_change", args=[conflict.pk])))
    assert "<code>blue</code>" in page and "<code>green</code>" in page
    assert "far-node" in page
    assert conflict.remote.hlc not in page.replace(f'title="{conflict.remote.hlc}"', "")
    wall = timezone.localtime(datetime.fromtimestamp(int(conflict.remote.hlc[:15]) / 1000, tz=UTC))
    assert wall.strftime("%Y-%m-%d %H:%M:%S.") in page
    assert 'id="cs-keep-local"' in page and 'id="cs-use-remote"' in page


@pytest.mark.parametrize("same", [True, False], ids=["same", "different"])
def test_a_secret_conflict_is_masked_with_a_same_value_answer(
    admin_client: Client, same: bool
) -> None:
    remote = CANARY_SECRET if same else CANARY_SECRET + "-2"
    conflict = setting_conflict("API_TOKEN", local=CANARY_SECRET, remote=remote, sensitive=True)
    page = body(admin_client.get(reverse("admin:configsync_conflict_change", args=[conflict.pk])))
    assert "CANARY" not in page
    for version in (conflict.local, conflict.remote):
        assert (version.data or {})["secret_value"] not in page  # nor the ciphertext
    row = page.split('data-field="secret_value"')[1].split("</tr>")[0]
    assert "********" in row
    assert ("same value" if same else "different values") in row


def test_use_remote_resolves_and_writes_the_remote_value(admin_client: Client) -> None:
    conflict = setting_conflict("COLOUR", local="blue", remote="green")
    url = reverse("admin:configsync_conflict_resolve", args=[conflict.pk])
    response = admin_client.post(url, {"choice": "remote"})
    assert response.status_code == 302
    page = body(admin_client.get(response["Location"]))
    assert "resolved: the remote version used" in page
    assert SystemConfig.objects.get(key="COLOUR").value == "green"
    assert Conflict.objects.get(pk=conflict.pk).resolution == "remote"
    assert 'id="cs-keep-local"' not in page  # resolved: no more buttons


def test_a_bad_choice_or_a_second_resolution_changes_nothing(admin_client: Client) -> None:
    conflict = setting_conflict("COLOUR", local="blue", remote="green")
    url = reverse("admin:configsync_conflict_resolve", args=[conflict.pk])
    response = admin_client.post(url, {"choice": "both"})
    assert "choice must be" in body(admin_client.get(response["Location"])).lower()
    assert Conflict.objects.get(pk=conflict.pk).status == "open"
    admin_client.post(url, {"choice": "local"})
    response = admin_client.post(url, {"choice": "remote"})
    assert "already resolved" in body(admin_client.get(response["Location"]))
    assert SystemConfig.objects.get(key="COLOUR").value == "blue"
    assert admin_client.get(url).status_code == 405


# --- deployment mode -------------------------------------------------------------------------


def test_the_mode_page_shows_the_matrix_and_switches_the_mode(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:configsync_nodeidentity_changelist"))
    assert response.status_code == 302  # straight to the one row
    page = body(admin_client.get(response["Location"]))
    assert 'id="cs-current-mode"' in page
    assert "strategy matrix" in page.lower()
    assert "Switch mode" in page
    before = deployment_mode()
    target = "LOCAL_EXTERNAL" if before != "LOCAL_EXTERNAL" else "LOCAL_ONLY"
    response = admin_client.post(response["Location"], {"deployment_mode": target})
    assert response.status_code == 302
    page = body(admin_client.get(response["Location"]))
    assert f"Deployment mode switched from {before} to {target}." in page
    assert f'id="cs-current-mode">{target}<' in page
    assert deployment_mode() == target
    assert NodeIdentity.objects.get().deployment_mode == target


def test_an_unknown_mode_is_refused_and_changes_nothing(admin_client: Client) -> None:
    row = NodeIdentity.objects.get()
    before = deployment_mode()
    url = reverse("admin:configsync_nodeidentity_change", args=[row.pk])
    response = admin_client.post(url, {"deployment_mode": "EVERYWHERE"})
    assert response.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in body(response)
    assert deployment_mode() == before


def test_sync_now_with_one_peer_enqueues_that_peer_only(
    admin_client: Client, django_capture_on_commit_callbacks
) -> None:
    PeerFactory(name="cloud")
    PeerFactory(name="edge")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(reverse("admin:configsync_sync_now"), {"peer": "edge"})
    assert len(callbacks) == 1
    assert "Sync enqueued with edge." in body(admin_client.get(response["Location"]))


def test_a_secret_this_node_cannot_decrypt_is_cannot_tell_and_a_tombstone_is_deleted(
    admin_client: Client,
) -> None:
    conflict = setting_conflict("API_TOKEN", local=CANARY_SECRET, remote="x", sensitive=True)
    other = setting_conflict("OTHER_TOKEN", local="y", remote="z", sensitive=True)
    # a token bound to another record does not open under this one's context
    remote = dict(conflict.remote_version)
    remote["data"] = {**remote["data"], "secret_value": other.remote.data["secret_value"]}
    remote["deleted"] = False
    Conflict.objects.filter(pk=conflict.pk).update(remote_version=remote)
    page = body(admin_client.get(reverse("admin:configsync_conflict_change", args=[conflict.pk])))
    row = page.split('data-field="secret_value"')[1].split("</tr>")[0]
    assert "cannot tell" in row
    assert "CANARY" not in page

    gone = {**conflict.remote_version, "deleted": True, "data": None}
    Conflict.objects.filter(pk=other.pk).update(remote_version=gone)
    page = body(admin_client.get(reverse("admin:configsync_conflict_change", args=[other.pk])))
    assert "<td>deleted</td>" in page
    assert "(absent)" in page  # the tombstone carries no fields


# --- permissions, malformed versions, times, query counts ------------------------------------


def _staff(client: Client, name: str, *codenames: str) -> Any:
    user = get_user_model().objects.create_user(name, password="pw-test-only", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def test_a_user_who_may_only_view_conflicts_cannot_resolve_them_from_the_list(
    client: Client,
) -> None:
    conflict = setting_conflict("COLOUR", local="blue", remote="green")
    _staff(client, "viewer", "view_conflict")
    changelist = reverse("admin:configsync_conflict_changelist")
    assert "resolve_keep_remote" not in body(client.get(changelist))
    client.post(changelist, {"action": "resolve_keep_remote", "_selected_action": [conflict.pk]})
    assert Conflict.objects.get(pk=conflict.pk).status == Conflict.Status.OPEN
    assert SystemConfig.objects.get(key="COLOUR").value == "blue"
    page = body(client.get(reverse("admin:configsync_conflict_change", args=[conflict.pk])))
    assert 'id="cs-use-remote"' not in page


def test_a_user_who_may_change_conflicts_resolves_them_from_the_list(client: Client) -> None:
    conflict = setting_conflict("COLOUR", local="blue", remote="green")
    _staff(client, "resolver", "view_conflict", "change_conflict")
    changelist = reverse("admin:configsync_conflict_changelist")
    assert "resolve_keep_remote" in body(client.get(changelist))
    client.post(changelist, {"action": "resolve_keep_remote", "_selected_action": [conflict.pk]})
    assert Conflict.objects.get(pk=conflict.pk).resolution == "remote"
    assert SystemConfig.objects.get(key="COLOUR").value == "green"


def test_staff_who_may_change_peers_see_the_node_state_on_the_index(client: Client) -> None:
    _staff(client, "operator", "change_peer")
    assert client.get(reverse("admin:configsync_sync_overview")).status_code == 200
    assert "cs-node-health" in body(client.get(reverse("admin:index")))


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        ({"hlc": "999999999999999:00000000:far-node", "data": {"value": "blue"}}, ["junk"]),
        ("not a version", {"hlc": 12, "origin": None, "data": "text"}),
    ],
    ids=["year-out-of-range-and-a-list", "text-and-wrong-types"],
)
def test_a_malformed_kept_version_shows_what_it_holds_not_a_server_error(
    admin_client: Client, local: Any, remote: Any
) -> None:
    conflict = setting_conflict("COLOUR", local="blue", remote="green")
    Conflict.objects.filter(pk=conflict.pk).update(local_version=local, remote_version=remote)
    url = reverse("admin:configsync_conflict_change", args=[conflict.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    if isinstance(local, dict):
        assert local["hlc"] in body(response)  # no time to show: the stamp itself
    assert admin_client.get(reverse("admin:configsync_conflict_changelist")).status_code == 200


def test_the_env_files_version_shows_the_files_time(admin_client: Client) -> None:
    conflict = setting_conflict("COLOUR", local="blue", remote="green")
    mtime = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    remote = {
        **conflict.remote_version,
        "hlc": f"{int(mtime.timestamp() * 1000):015d}:00000000:env-file",
        "origin": "env-file:/srv/app/.env",
    }
    Conflict.objects.filter(pk=conflict.pk).update(remote_version=remote)
    page = body(admin_client.get(reverse("admin:configsync_conflict_change", args=[conflict.pk])))
    assert "2026-03-04 05:06:07.891 UTC" in page
    assert "env-file:/srv/app/.env" in page


def test_a_version_without_a_time_shows_its_stamp_not_1970(admin_client: Client) -> None:
    conflict = setting_conflict("COLOUR", local="blue", remote="green")
    remote = {**conflict.remote_version, "hlc": "000000000000000:00000000:env-file"}
    Conflict.objects.filter(pk=conflict.pk).update(remote_version=remote)
    page = body(admin_client.get(reverse("admin:configsync_conflict_change", args=[conflict.pk])))
    assert "1970-01-01" not in page
    assert "000000000000000:00000000:env-file" in page


@override_settings(TIME_ZONE="America/New_York")
def test_times_are_shown_in_utc_to_the_millisecond_whatever_the_time_zone(
    admin_client: Client,
) -> None:
    run = _run(PeerFactory(name="cloud"), ok=False, error="TransportError: refused")
    started = run.started_at.astimezone(UTC)
    stamp = started.strftime("%Y-%m-%d %H:%M:%S.") + f"{started.microsecond // 1000:03d} UTC"
    assert stamp in body(admin_client.get(reverse("admin:configsync_syncrun_changelist")))
    failed = run.finished_at.astimezone(UTC)
    failed_at = failed.strftime("%Y-%m-%d %H:%M:%S.") + f"{failed.microsecond // 1000:03d} UTC"
    assert failed_at in body(admin_client.get(reverse("admin:configsync_sync_overview")))
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    when = event.created_at.astimezone(UTC)
    shown = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"
    assert shown in body(admin_client.get(reverse("admin:configsync_auditevent_changelist")))


def _busy_peers(first: int, count: int) -> None:
    for number in range(first, first + count):
        peer = PeerFactory(name=f"peer{number}", node_id=f"node{number}")
        for ok in (True, False, True):
            _run(peer, ok=ok, error="" if ok else "TransportError: refused")
        SyncRun.objects.filter(peer=peer).update(skew_ms=number)
        setting_conflict(f"KEY_{number}", local="a", remote="b", peer=peer.name)


@pytest.mark.parametrize(
    "url",
    [
        "admin:configsync_sync_overview",
        "admin:configsync_peer_changelist",
        "admin:index",
        "admin:configsync_syncrun_changelist",
        "admin:configsync_conflict_changelist",
    ],
    ids=["overview", "peers", "index", "runs", "conflicts"],
)
def test_pages_cost_the_same_queries_for_one_peer_or_many(
    admin_client: Client, django_assert_max_num_queries: Any, url: str
) -> None:
    _busy_peers(0, 1)
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(reverse(url)).status_code == 200
    _busy_peers(1, 12)
    with django_assert_max_num_queries(len(one)):
        assert admin_client.get(reverse(url)).status_code == 200


def test_the_bulk_peer_status_matches_each_peers_own_reading() -> None:
    """The overview reads every peer at once: the same figures as peer by peer."""
    _busy_peers(0, 3)
    quiet = PeerFactory(name="quiet")
    running = PeerFactory(name="running")
    _run(running, ok=False, error="TransportError: refused")
    SyncRun.objects.create(peer=running)  # started, not finished
    peers = list(Peer.objects.order_by("name"))
    assert [s.name for s in peer_statuses(peers)] == [p.name for p in peers]
    for status in peer_statuses(peers):
        peer = Peer.objects.get(pk=status.id)
        assert status == peer_statuses([peer])[0]
    by_name = {s.name: s for s in peer_statuses(peers)}
    assert by_name["peer2"].clock_skew_ms == 2
    assert by_name["peer2"].open_conflicts == 1
    assert by_name["peer2"].recent_runs == 3
    assert by_name["peer2"].success_rate == pytest.approx(2 / 3)
    assert by_name["peer2"].last_run_ok is True
    assert by_name["quiet"].last_run_at is None and by_name["quiet"].recent_runs == 0
    assert quiet.pk == by_name["quiet"].id
    assert by_name["running"].last_run_ok is False  # the unfinished run does not count
    assert by_name["running"].last_error.startswith("TransportError")
    assert peer_health_state(by_name["running"])[0] == FAILING


@override_settings(CONFIGSYNC_DEPLOYMENT_MODE="LOCAL_R2")
def test_no_sync_now_button_for_a_peer_whose_transport_the_mode_does_not_use(
    admin_client: Client, django_capture_on_commit_callbacks
) -> None:
    PeerFactory(name="cloud")  # http: LOCAL_R2 syncs only with the bucket
    page = body(admin_client.get(reverse("admin:configsync_sync_overview")))
    assert 'data-peer="cloud" data-state="disabled"' in page
    assert 'class="cs-sync-peer"' not in page  # no button that would do nothing
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(reverse("admin:configsync_sync_now"), {"peer": "cloud"})
    page = body(admin_client.get(response["Location"]))
    assert "Sync enqueued with cloud" not in page
    assert "nothing was enqueued" in page


def test_staff_who_may_only_view_the_mode_get_no_switch_and_cannot_switch(client: Client) -> None:
    _staff(client, "watcher", "view_nodeidentity")
    row = NodeIdentity.objects.get()
    before = deployment_mode()
    url = reverse("admin:configsync_nodeidentity_change", args=[row.pk])
    page = body(client.get(url))
    assert f'id="cs-current-mode">{before}<' in page
    assert 'id="cs-switch-mode"' not in page
    target = "LOCAL_ONLY" if before != "LOCAL_ONLY" else "LOCAL_EXTERNAL"
    assert client.post(url, {"deployment_mode": target}).status_code == 403
    assert deployment_mode() == before
