"""Deployment modes (stored, switchable at run time) and the strategy matrix per data type."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

import configsync
from configsync.models import NodeIdentity, Peer
from configsync.replication import registry, strategies
from configsync.replication.checks import (
    check_mode_transports,
    check_stored_mode_transports,
    check_sync_strategies,
)
from configsync.replication.selectors.mode import deployment_mode, strategy_matrix
from configsync.replication.selectors.status import sync_status
from configsync.replication.services.cycle import sync_cycle
from configsync.replication.services.mode import deployment_mode_set
from configsync.replication.services.peers import peer_seed_from_settings
from configsync.services.node import node_id
from configsync.services.system_config import system_config_set
from tests.factories import PeerFactory
from tests.support.replication import REMOTE, remote_change
from tests.support.scripted_peer import ScriptedPeer
from tests.testapp.models import Project, Template

pytestmark = pytest.mark.django_db

BOTH = ["local_to_external", "external_to_local"]
OUT = ["local_to_external"]
R2 = {
    "CONFIGSYNC_R2_ENDPOINT_URL": "http://127.0.0.1:9",
    "CONFIGSYNC_R2_BUCKET": "b",
    "CONFIGSYNC_R2_ACCESS_KEY_ID": "id",
    "CONFIGSYNC_R2_SECRET_ACCESS_KEY": "sk-CANARY-r2",
}

# mode -> data type -> (sync_enabled, directions, strategy)
MATRIX = {
    "LOCAL_ONLY": {
        t: (False, [], "full_duplex")
        for t in ("users", "system_config", "ai_providers", "projects", "templates")
    },
    "LOCAL_EXTERNAL": {
        t: (True, BOTH, "full_duplex")
        for t in ("users", "system_config", "ai_providers", "projects", "templates")
    },
    "LOCAL_R2": {
        "users": (True, BOTH, "full_duplex"),
        "system_config": (True, BOTH, "full_duplex"),
        "ai_providers": (True, BOTH, "full_duplex"),
        "projects": (True, OUT, "backup_only"),
        "templates": (True, OUT, "backup_only"),
    },
    "LOCAL_EXTERNAL_R2": {
        t: (True, BOTH, "full_duplex")
        for t in ("users", "system_config", "ai_providers", "projects", "templates")
    },
}


@pytest.mark.parametrize(
    ("mode", "data_type"),
    [(m, t) for m, rows in MATRIX.items() for t in rows],
)
def test_the_default_matrix_for_every_mode(mode: str, data_type: str, settings: Any) -> None:
    settings.CONFIGSYNC_SYNC_INTERVAL_SECONDS = 30
    row = strategy_matrix(mode=mode)[data_type]
    assert (row.sync_enabled, list(row.directions), row.strategy) == MATRIX[mode][data_type]
    assert row.interval_seconds == 30
    assert row.critical == (data_type in ("users", "system_config", "ai_providers"))


def test_every_registered_type_has_a_row_and_the_public_call_registered_the_test_app() -> None:
    assert set(strategy_matrix(mode="LOCAL_EXTERNAL")) == set(MATRIX["LOCAL_EXTERNAL"])
    assert registry.for_model(Template) is not None
    assert registry.data_type_of("testapp.template") == "templates"
    assert registry.data_types()["projects"] is False
    assert "replicate" in configsync.__all__


def test_replicate_refuses_a_natural_key_that_is_not_a_unique_field() -> None:
    with pytest.raises(ValueError, match="has no field 'nope'"):
        configsync.replicate(Project, natural_key="nope", data_type="projects")
    with pytest.raises(ValueError, match="must be a unique field"):
        configsync.replicate(Project, natural_key="name", data_type="projects")
    with pytest.raises(ValueError, match="lower-case identifier"):
        configsync.replicate(Project, natural_key="slug", data_type="Bad Type")
    assert registry.for_model(Project).natural_key_field == "slug"  # type: ignore[union-attr]


def test_overrides_change_a_row_in_every_mode_but_local_only(settings: Any) -> None:
    settings.CONFIGSYNC_SYNC_STRATEGIES = {
        "templates": {"sync_enabled": False},
        "projects": {"directions": ["external_to_local"], "interval_seconds": 600},
    }
    rows = strategy_matrix(mode="LOCAL_EXTERNAL")
    assert not rows["templates"].sync_enabled and not rows["templates"].allows("local_to_external")
    assert rows["projects"].directions == ("external_to_local",)
    assert rows["projects"].interval_seconds == 600
    assert rows["system_config"].directions == tuple(BOTH)
    assert not strategy_matrix(mode="LOCAL_ONLY")["projects"].sync_enabled
    assert check_sync_strategies() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"widgets": {"sync_enabled": False}}, "unknown data type 'widgets'"),
        ({"templates": {"directions": ["sideways"]}}, "unknown direction 'sideways'"),
        ({"templates": {"strategy": "mirror"}}, "unknown strategy 'mirror'"),
        ({"templates": {"colour": "red"}}, "unknown option 'colour'"),
        ({"templates": {"sync_enabled": "no"}}, "sync_enabled must be true or false"),
        ({"templates": {"interval_seconds": 0}}, "interval_seconds must be a whole number"),
        (
            {"templates": {"strategy": "backup_only", "directions": BOTH}},
            "backup_only is never read back",
        ),
        (["templates"], "must be a mapping"),
    ],
)
def test_a_bad_override_is_a_system_check_error_naming_it_and_is_ignored(
    overrides: Any, message: str, settings: Any
) -> None:
    settings.CONFIGSYNC_SYNC_STRATEGIES = overrides
    errors = check_sync_strategies()
    assert [e.id for e in errors] == ["configsync.E021"] and message in errors[0].msg
    assert strategy_matrix(mode="LOCAL_EXTERNAL")["templates"].allows("local_to_external")


def test_mode_comes_from_the_settings_until_set_and_a_switch_needs_no_restart(
    settings: Any,
) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    node_id()
    assert deployment_mode() == "LOCAL_EXTERNAL"
    assert deployment_mode_set(mode="LOCAL_ONLY", actor="test") == "LOCAL_ONLY"
    assert NodeIdentity.objects.get().deployment_mode == "LOCAL_ONLY"
    assert deployment_mode() == "LOCAL_ONLY"
    deployment_mode_set(mode="", actor="test")
    assert deployment_mode() == "LOCAL_EXTERNAL"


def test_an_unknown_mode_is_rejected_with_the_reason_and_the_mode_kept(cli: Any) -> None:
    deployment_mode_set(mode="LOCAL_EXTERNAL", actor="test")
    result = cli("mode", "set", "CLOUD")
    assert result.code == 1
    assert "unknown deployment mode 'CLOUD'" in result.err and "current mode is kept" in result.err
    assert deployment_mode() == "LOCAL_EXTERNAL"


def test_mode_set_and_show_on_the_command_line(cli: Any, settings: Any) -> None:
    settings.CONFIGSYNC_SYNC_STRATEGIES = {"templates": {"sync_enabled": False}}
    set_ = cli("mode", "set", "LOCAL_EXTERNAL")
    assert set_.code == 0 and "mode LOCAL_EXTERNAL (from stored)" in set_.out
    shown = cli("mode", "show")
    assert "templates: sync off" in shown.out and "system_config (critical): sync on" in shown.out
    body = __import__("json").loads(cli("mode", "show", "--json").out)
    assert body["mode"] == "LOCAL_EXTERNAL" and body["source"] == "stored"
    assert body["strategies"]["templates"]["sync_enabled"] is False
    assert body["strategies"]["templates"]["models"] == ["testapp.template"]
    assert body["strategies"]["projects"]["directions"] == BOTH
    back = cli("mode", "set", "settings")
    assert back.code == 0 and "back to the settings" in back.out


def test_the_strategies_endpoint_prints_the_rows_keyed_by_data_type(admin_client: Any) -> None:
    deployment_mode_set(mode="LOCAL_R2", actor="test")
    body = admin_client.get("/api/v1/sync/strategies").json()
    assert body["mode"] == "LOCAL_R2" and body["transports"] == ["bucket"]
    assert body["strategies"]["templates"]["strategy"] == "backup_only"
    assert body["strategies"]["system_config"]["directions"] == BOTH
    assert any("LOCAL_R2 needs CONFIGSYNC_R2_ENDPOINT_URL" in p for p in body["problems"])


def test_the_mode_is_not_replicated(cli: Any) -> None:
    assert registry.for_model(NodeIdentity) is None


@pytest.fixture
def peer() -> Peer:
    return PeerFactory(name="cloud", node_id=REMOTE)


def _pushed_models(remote: ScriptedPeer) -> list[str]:
    return [change["model"] for batch in remote.pushed for change in batch]


def test_a_cycle_leaves_out_what_the_matrix_says(peer: Peer, settings: Any) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    settings.CONFIGSYNC_SYNC_STRATEGIES = {
        "templates": {"sync_enabled": False},
        "projects": {"directions": ["local_to_external"]},
    }
    system_config_set(key="MINE", value="1")
    Template.objects.create(slug="t1", body="x")
    Project.objects.create(slug="p1", name="P")
    remote = ScriptedPeer(
        node=REMOTE,
        feed=[
            remote_change("THEIRS"),
            remote_change(
                "p2",
                model="testapp.project",
                data={"slug": "p2", "name": "remote"},
            ),
        ],
    )
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert sorted(_pushed_models(remote)) == ["configsync.systemconfig", "testapp.project"]
    assert not Project.objects.filter(slug="p2").exists()  # projects: not applied here
    assert result.left_out == 2 and result.pulled == 1


def test_templates_sync_both_ways_by_default(peer: Peer, settings: Any) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    Template.objects.create(slug="t1", body="x")
    remote = ScriptedPeer(
        node=REMOTE,
        feed=[remote_change("t2", model="testapp.template", data={"slug": "t2", "body": "y"})],
    )
    sync_cycle(peer_id=peer.pk, transport=remote)
    assert "testapp.template" in _pushed_models(remote)
    assert Template.objects.get(slug="t2").body == "y"


def test_a_switch_to_local_only_changes_what_the_next_cycle_does(peer: Peer, settings: Any) -> None:
    from configsync import tasks

    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    assert tasks._enabled_peer_ids() == [peer.pk]
    deployment_mode_set(mode="LOCAL_ONLY", actor="test")
    assert tasks._enabled_peer_ids() == []
    Template.objects.create(slug="t1", body="x")
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("THEIRS")])
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert _pushed_models(remote) == [] and result.pulled == 0 and result.left_out == 2


def test_sync_in_local_only_says_so(peer: Peer, cli: Any) -> None:
    deployment_mode_set(mode="LOCAL_ONLY", actor="test")
    result = cli("sync")
    assert result.code == 1 and "LOCAL_ONLY: nothing syncs" in result.err


def test_a_bucket_mode_without_its_settings_is_an_error_and_status_names_it(
    settings: Any, cli: Any
) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_R2"
    found = check_mode_transports()
    assert [m.id for m in found] == ["configsync.E022"]
    assert "LOCAL_R2 needs CONFIGSYNC_R2_ENDPOINT_URL" in found[0].msg
    report = sync_status(node=node_id())
    assert any("LOCAL_R2 needs CONFIGSYNC_R2_ENDPOINT_URL" in w for w in report.warnings)
    assert "LOCAL_R2 needs CONFIGSYNC_R2_ENDPOINT_URL" in cli("status").out


def test_a_bucket_mode_with_its_settings_passes_and_seeds_the_bucket_peer(settings: Any) -> None:
    for name, value in R2.items():
        setattr(settings, name, value)
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_R2"
    assert check_mode_transports() == []
    peer_seed_from_settings()
    assert list(Peer.objects.values_list("name", "transport", "base_url")) == [("r2", "bucket", "")]
    from configsync import tasks

    assert tasks._enabled_peer_ids() == [Peer.objects.get(name="r2").pk]


def test_an_external_mode_without_an_external_side_is_warned_about(settings: Any) -> None:
    for name, value in R2.items():
        setattr(settings, name, value)
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL_R2"
    found = check_mode_transports()
    assert [m.id for m in found] == ["configsync.W021"]
    assert "no external side" in found[0].msg and "sk-CANARY" not in found[0].msg
    settings.EXTERNAL_DATABASE_URL = "postgres://u:sk-CANARY-pw@db.example/cfg"
    assert check_mode_transports() == []


@pytest.mark.parametrize(
    ("mode", "kinds"),
    [
        ("LOCAL_ONLY", []),
        ("LOCAL_EXTERNAL", ["external-db", "http-peer"]),
        ("LOCAL_R2", ["r2"]),
        ("LOCAL_EXTERNAL_R2", ["external-db", "http-peer", "r2"]),
    ],
)
def test_the_mode_decides_which_transports_a_cycle_uses(
    settings: Any, mode: str, kinds: list[str]
) -> None:
    from configsync import tasks

    for name, value in R2.items():
        setattr(settings, name, value)
    settings.EXTERNAL_DATABASE_URL = "postgres://u:sk-CANARY-pw@db.example/cfg"
    settings.CONFIGSYNC_PEERS = ["http-peer=https://peer.example"]
    peer_seed_from_settings()
    deployment_mode_set(mode=mode, actor="test")
    names = dict(Peer.objects.values_list("pk", "name"))
    assert sorted(names[pk] for pk in tasks._enabled_peer_ids()) == kinds


def test_a_peer_named_like_a_medium_is_refused(settings: Any) -> None:
    for name, value in R2.items():
        setattr(settings, name, value)
    settings.CONFIGSYNC_PEERS = ["r2=https://peer.example"]
    with pytest.raises(ValidationError, match="reserved"):
        peer_seed_from_settings()
    assert not Peer.objects.exists()


def test_a_stored_bucket_mode_is_checked_by_the_database_check(settings: Any) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    settings.CONFIGSYNC_PEERS = ["cloud=https://cfg.example"]
    assert check_mode_transports() == [] and check_stored_mode_transports() == []
    deployment_mode_set(mode="LOCAL_R2", actor="test")
    assert [m.id for m in check_stored_mode_transports()] == ["configsync.E022"]


def test_the_mode_command_is_listed(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        call_command("configsync", "mode", "--help")
    assert "show" in capsys.readouterr().out
    assert strategies.STRATEGIES == ("full_duplex", "backup_only")


def _mode_page(admin_client: Any) -> str:
    from django.urls import reverse

    node_id()
    row = NodeIdentity.objects.get()
    return reverse("admin:configsync_nodeidentity_change", args=[row.pk])


def test_the_admin_switches_the_mode_and_shows_the_matrix(admin_client: Any) -> None:
    url = _mode_page(admin_client)
    page = admin_client.get(url).content.decode()
    assert "Strategy matrix" in page and "<td>templates</td>" in page
    response = admin_client.post(url, {"deployment_mode": "LOCAL_R2"})
    assert response.status_code == 302
    assert deployment_mode() == "LOCAL_R2"
    page = admin_client.get(url).content.decode()
    assert "backup_only" in page and "LOCAL_R2 needs CONFIGSYNC_R2_ENDPOINT_URL" in page


def test_the_admin_refuses_an_unknown_mode_and_keeps_the_current_one(admin_client: Any) -> None:
    deployment_mode_set(mode="LOCAL_EXTERNAL", actor="test")
    url = _mode_page(admin_client)
    response = admin_client.post(url, {"deployment_mode": "CLOUD"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert deployment_mode() == "LOCAL_EXTERNAL"


@pytest.mark.parametrize("mode", ["LOCAL_ONLY", "LOCAL_R2"])
def test_a_cycle_already_queued_for_a_peer_the_new_mode_does_not_use_does_not_run(
    peer: Peer, settings: Any, monkeypatch: Any, mode: str
) -> None:
    """A ``sync_peer`` enqueued (or being retried) before a switch must not run under the new
    mode: its matrix would move the peer's checkpoints past what it leaves out, for good."""
    from configsync import tasks
    from configsync.models import PeerCheckpoint, SyncRun

    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("THEIRS")])
    monkeypatch.setattr("configsync.replication.services.link.transport_for", lambda _peer: remote)
    Template.objects.create(slug="t1", body="x")
    deployment_mode_set(mode=mode, actor="test")

    assert tasks.sync_peer.apply(args=[peer.pk]).get() is False

    assert not SyncRun.objects.exists() and remote.pushed == []
    assert not PeerCheckpoint.objects.exclude(cursor="").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"templates": {"interval_seconds": True}},
        {"no_such_type": {"interval_seconds": 1}},
        {"templates": {"interval_seconds": 1, "strategy": "sometimes"}},
    ],
)
def test_a_bad_override_does_not_set_the_beat_either(settings: Any, overrides: Any) -> None:
    """The matrix ignores a bad ``CONFIGSYNC_SYNC_STRATEGIES`` whole (a system check error): so
    must the beat, which would otherwise run every second."""
    from configsync import tasks

    settings.CONFIGSYNC_SYNC_INTERVAL_SECONDS = 30
    settings.CONFIGSYNC_SYNC_STRATEGIES = overrides
    assert check_sync_strategies()
    assert tasks.sync_schedule_seconds() == 30
    settings.CONFIGSYNC_SYNC_STRATEGIES = {"templates": {"interval_seconds": 10}}
    assert tasks.sync_schedule_seconds() == 10


@pytest.mark.parametrize(
    ("name", "transport", "base_url", "field"),
    [
        ("cloud", "http", "", "base_url"),
        ("r2", "http", "https://peer.example", "name"),
        ("second-bucket", "bucket", "", "transport"),
        ("r2", "database", "", "transport"),
    ],
)
def test_the_admin_refuses_a_peer_that_is_not_one_of_a_kind(
    name: str, transport: str, base_url: str, field: str
) -> None:
    peer = Peer(name=name, transport=transport, base_url=base_url)
    with pytest.raises(ValidationError) as info:
        peer.full_clean()
    assert field in info.value.message_dict
    Peer(name="r2", transport="bucket").full_clean()
