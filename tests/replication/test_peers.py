"""Peers seeded from CONFIGSYNC_PEERS, and tombstone collection after every peer acknowledged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from configsync.models import Peer, PeerCheckpoint, ReplicatedRecord
from configsync.replication.selectors.feed import feed_last_cursor
from configsync.replication.selectors.peers import peers_enabled
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.peers import (
    TOMBSTONE_MIN_AGE,
    peer_seed_from_settings,
    tombstones_collect,
)
from configsync.services.system_config import system_config_delete, system_config_set
from tests.factories import PeerFactory
from tests.support.replication import REMOTE, remote_change

pytestmark = pytest.mark.django_db


def test_seeding_is_idempotent_and_updates_urls(settings: Any) -> None:
    settings.CONFIGSYNC_PEERS = ["cloud=https://cfg.example.com/", " edge = http://10.0.0.2:8000 "]
    first = peer_seed_from_settings()
    assert [(p.name, p.base_url) for p in first] == [
        ("cloud", "https://cfg.example.com"),
        ("edge", "http://10.0.0.2:8000"),
    ]
    Peer.objects.filter(name="edge").update(enabled=False)
    settings.CONFIGSYNC_PEERS = ["cloud=https://new.example.com", "edge=http://10.0.0.2:8000"]
    peer_seed_from_settings()
    assert Peer.objects.count() == 2
    assert Peer.objects.get(name="cloud").base_url == "https://new.example.com"
    assert [p.name for p in peers_enabled()] == ["cloud"]  # the admin's choice is kept


@pytest.mark.parametrize(
    "entry",
    ["nourl", "=http://x", "bad name=http://u:sk-CANARY-pw@x", "n=ftp://u:sk-CANARY-pw@x"],
)
def test_malformed_entries_are_refused_without_quoting_them(settings: Any, entry: str) -> None:
    settings.CONFIGSYNC_PEERS = ["ok=http://ok.invalid", entry]
    with pytest.raises(ValidationError) as info:
        peer_seed_from_settings()
    assert "item 2" in str(info.value) and "CANARY" not in str(info.value)
    assert not Peer.objects.exists()


def _tombstone(key: str) -> None:
    system_config_set(key=key, value="1")
    system_config_delete(key=key)
    _age_tombstones()


def _age_tombstones() -> None:
    """Make every tombstone older than the minimum age collection waits for."""
    old = timezone.now() - TOMBSTONE_MIN_AGE - timedelta(minutes=1)
    ReplicatedRecord.objects.filter(deleted=True).update(updated_at=old)


def test_tombstones_stay_until_every_peer_acknowledged() -> None:
    a = PeerFactory(name="a", base_url="http://a.invalid", node_id="node-a")
    b = PeerFactory(name="b", base_url="http://b.invalid", node_id="node-b")
    _tombstone("GONE")
    changes_apply(
        changes=[remote_change("FROM_B", node="node-b", deleted=True)],
        source_node="node-b",
        source_name="b",
    )
    _age_tombstones()
    assert tombstones_collect() == 0
    PeerCheckpoint.objects.create(peer=a, direction="push", cursor=feed_last_cursor())
    # FROM_B: b sent it, a acknowledged it. GONE: b has not acknowledged it yet.
    assert tombstones_collect() == 1
    assert ReplicatedRecord.objects.filter(natural_key="GONE", deleted=True).exists()
    PeerCheckpoint.objects.create(peer=b, direction="push", cursor=feed_last_cursor())
    assert tombstones_collect() == 1
    assert not ReplicatedRecord.objects.filter(deleted=True).exists()


def test_a_tombstone_received_from_the_only_peer_counts_as_acknowledged() -> None:
    PeerFactory(name="r", base_url="http://r.invalid", node_id=REMOTE)
    changes_apply(changes=[remote_change("X", deleted=True)], source_node=REMOTE, source_name="r")
    _age_tombstones()
    system_config_set(key="LIVE", value="1")
    assert tombstones_collect() == 1
    assert ReplicatedRecord.objects.filter(natural_key="LIVE").exists()


def test_a_push_checkpoint_of_another_epoch_acknowledges_nothing() -> None:
    peer = PeerFactory(name="a", base_url="http://a.invalid")
    _tombstone("GONE")
    PeerCheckpoint.objects.create(peer=peer, direction="push", cursor="0badc0de.999")
    assert tombstones_collect() == 0


def test_young_tombstones_stay_even_when_acknowledged_or_without_peers() -> None:
    """A peer added later may still hold the record: a young tombstone must stop it."""
    _tombstone("OLD")
    system_config_set(key="YOUNG", value="1")
    system_config_delete(key="YOUNG")
    assert not Peer.objects.exists()
    assert tombstones_collect() == 1
    assert list(ReplicatedRecord.objects.values_list("natural_key", flat=True)) == ["YOUNG"]


def test_system_checks_of_replication(settings: Any) -> None:
    from configsync.replication.checks import check_node_id, check_sync_secret

    settings.CONFIGSYNC_PEERS = ["b=http://127.0.0.1:9"]
    settings.CONFIGSYNC_SYNC_SECRET = ""
    assert [m.id for m in check_sync_secret()] == ["configsync.W020"]
    settings.CONFIGSYNC_SYNC_SECRET = "set"
    assert check_sync_secret() == []
    settings.CONFIGSYNC_NODE_ID = "node a:1"
    assert [m.id for m in check_node_id()] == ["configsync.E020"]
    settings.CONFIGSYNC_NODE_ID = "node-a.eu_1"
    assert check_node_id() == []


def test_a_quarantined_change_never_resurrects_a_collected_tombstone(monkeypatch: Any) -> None:
    """An update held here (the node could not store it then), superseded at its origin by a
    delete whose tombstone every peer acknowledged: the tombstone is kept while the update may
    still be retried, so the retry answers stale instead of bringing the record back."""
    from configsync.models import QuarantinedChange, SystemConfig
    from configsync.replication import registry
    from configsync.replication.services.quarantine import quarantine_retry
    from tests.support.replication import stamp

    PeerFactory(name="r", base_url="http://r.invalid", node_id=REMOTE)
    refusing = {"now": True}

    def validate(instance: Any) -> None:
        if refusing["now"]:
            raise ValidationError({"value": "this node cannot store it yet"}, code="invalid")

    monkeypatch.setitem(registry._validators, "configsync.systemconfig", validate)
    update = remote_change("K", "v1")
    changes_apply(changes=[update], source_node=REMOTE, source_name="r")
    assert QuarantinedChange.objects.get().status == "open"
    refusing["now"] = False
    later = stamp(REMOTE, logical=1)
    tombstone = remote_change("K", deleted=True, hlc=later, vv={REMOTE: later})
    changes_apply(changes=[tombstone], source_node=REMOTE, source_name="r")
    _age_tombstones()
    tombstones_collect()
    (outcome,) = quarantine_retry()
    assert outcome.status == "stale"
    assert not SystemConfig.objects.filter(key="K").exists()
    assert tombstones_collect() == 1  # nothing left to retry: now it goes


@pytest.mark.parametrize(
    "mode", ["", "LOCAL_ONLY", "LOCAL_EXTERNAL", "LOCAL_R2", "LOCAL_EXTERNAL_R2"]
)
def test_the_peers_a_write_pushes_to_are_the_enabled_ones_of_the_mode_read_now(
    mode: str, settings: Any
) -> None:
    from configsync.replication.selectors.peers import peers_enabled_ids
    from configsync.replication.services.mode import deployment_mode_set

    settings.CONFIGSYNC_DEPLOYMENT_MODE = ""
    for name, transport, enabled in [
        ("b-http", "http", True),
        ("a-off", "http", False),
        ("c-bucket", "bucket", True),
        ("d-database", "database", True),
    ]:
        PeerFactory(name=name, transport=transport, enabled=enabled)
    deployment_mode_set(mode=mode, actor="test")
    expected = list(peers_enabled().values_list("id", flat=True))
    assert peers_enabled_ids() == expected
    assert (expected == []) == (mode == "LOCAL_ONLY")


def test_a_push_names_its_sender_and_the_mode_in_one_query(
    settings: Any, django_assert_num_queries: Any
) -> None:
    from configsync.replication.selectors.peers import push_source
    from configsync.replication.services.mode import deployment_mode_set

    settings.CONFIGSYNC_DEPLOYMENT_MODE = ""
    PeerFactory(name="remote", node_id=REMOTE)
    deployment_mode_set(mode="LOCAL_EXTERNAL_R2", actor="test")
    with django_assert_num_queries(1):
        assert push_source(node=REMOTE) == ("remote", "LOCAL_EXTERNAL_R2")
    deployment_mode_set(mode="", actor="test")
    assert push_source(node="node-unknown") == ("node-unknown", "LOCAL_EXTERNAL")
