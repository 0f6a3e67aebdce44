"""Peers follow ``CONFIGSYNC_PEERS``: removed ones are disabled, never synced again by the beat.

Before, a peer removed from the variable kept being synced, two items with one name silently
kept the last, and a malformed value only logged "peers not seeded" on every beat.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ValidationError

from configsync import tasks
from configsync.models import Peer
from configsync.replication.selectors.peers import peers_enabled
from configsync.replication.services.peers import peer_seed_from_settings
from tests.factories import PeerFactory

pytestmark = pytest.mark.django_db


def names(queryset: Any) -> list[str]:
    return sorted(peer.name for peer in queryset)


def test_seeding_marks_the_peers_the_setting_names(settings: Any) -> None:
    settings.CONFIGSYNC_PEERS = ["cloud=https://cfg.example.com", "edge=http://10.0.0.2:8000"]
    peer_seed_from_settings()
    assert sorted(Peer.objects.values_list("name", "seeded", "enabled")) == [
        ("cloud", True, True),
        ("edge", True, True),
    ]


def test_a_peer_removed_from_the_setting_is_disabled_and_admin_peers_are_left_alone(
    settings: Any,
) -> None:
    PeerFactory(name="manual", base_url="http://10.0.0.9:8000")  # added in the admin
    settings.CONFIGSYNC_PEERS = ["cloud=https://cfg.example.com", "edge=http://10.0.0.2:8000"]
    peer_seed_from_settings()

    settings.CONFIGSYNC_PEERS = ["cloud=https://cfg.example.com"]
    assert names(peer_seed_from_settings()) == ["cloud"]

    assert names(peers_enabled()) == ["cloud", "manual"]
    edge = Peer.objects.get(name="edge")  # kept, with its checkpoints and history
    assert (edge.enabled, edge.seeded) == (False, False)


def test_a_removed_peer_is_not_enqueued_by_the_beat(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CONFIGSYNC_PEERS = ["cloud=http://127.0.0.1:9", "edge=http://127.0.0.1:8"]
    tasks.sync_all_peers.apply().get()
    settings.CONFIGSYNC_PEERS = ["cloud=http://127.0.0.1:9"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        peer_ids = tasks.sync_all_peers.apply().get()
    assert names(Peer.objects.filter(pk__in=peer_ids)) == ["cloud"]
    assert len(callbacks) == 1
    # push-on-write follows the same list
    assert names(Peer.objects.filter(pk__in=tasks.push_to_peers.apply().get())) == ["cloud"]


def test_adding_a_removed_peer_back_does_not_undo_a_disable(settings: Any) -> None:
    """Re-enabling is an operator's act in the admin: the setting never re-enables a peer."""
    settings.CONFIGSYNC_PEERS = ["cloud=https://cfg.example.com"]
    peer_seed_from_settings()
    settings.CONFIGSYNC_PEERS = []
    peer_seed_from_settings()
    settings.CONFIGSYNC_PEERS = ["cloud=https://new.example.com"]
    peer_seed_from_settings()
    cloud = Peer.objects.get(name="cloud")
    assert (cloud.seeded, cloud.enabled, cloud.base_url) == (True, False, "https://new.example.com")


def test_an_admin_peer_named_by_the_setting_is_adopted(settings: Any) -> None:
    PeerFactory(name="cloud", base_url="http://old.example.com")
    settings.CONFIGSYNC_PEERS = ["cloud=https://cfg.example.com"]
    peer_seed_from_settings()
    settings.CONFIGSYNC_PEERS = []
    peer_seed_from_settings()
    assert Peer.objects.get(name="cloud").enabled is False


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            ["a=http://a.example", "b=http://b.example", "a=http://c.example"],
            "items 1 and 3 have the same name",
        ),
        (["a=http://a.example/", "b=HTTP://A.EXAMPLE"], "items 1 and 2 have the same base URL"),
    ],
)
def test_duplicates_are_refused_and_change_nothing(
    settings: Any, entries: list[str], message: str
) -> None:
    settings.CONFIGSYNC_PEERS = entries
    with pytest.raises(ValidationError) as info:
        peer_seed_from_settings()
    assert message in str(info.value)
    assert not Peer.objects.exists()


def test_system_check_reports_a_malformed_setting(settings: Any) -> None:
    settings.CONFIGSYNC_PEERS = ["a=http://a.example", "a=http://b.example"]
    errors = [m for m in checks.run_checks() if m.id == "configsync.E030"]
    assert [e.msg for e in errors] == ["CONFIGSYNC_PEERS: items 1 and 2 have the same name"]
    settings.CONFIGSYNC_PEERS = ["a=http://a.example"]
    assert not [m for m in checks.run_checks() if m.id == "configsync.E030"]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://node-b:8000", True),  # a Compose / Kubernetes service name
        ("https://cfg.example.com", True),
        ("http://node-b", True),
        ("ftp://node-b:8000", False),
        ("http://-bad-:8000", False),
        ("http://user:sk-CANARY@node-b:8000", False),
        ("http://node b:8000", False),
    ],
)
def test_a_peer_url_may_name_a_single_label_host(url: str, ok: bool) -> None:
    from configsync.conf import parse_peers

    if ok:
        assert parse_peers([f"b={url}"]) == [("b", url)]
    else:
        with pytest.raises(ValidationError) as info:
            parse_peers([f"b={url}"])
        assert "CANARY" not in str(info.value)
