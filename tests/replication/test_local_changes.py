"""Local writes of replicated models become versions in the change feed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from configsync.models import NodeClock, ReplicatedRecord
from configsync.replication.hlc import HLC
from configsync.services.system_config import system_config_delete, system_config_set
from configsync.signals import change_committed
from providers.services import ai_provider_set
from tests.support.replication import LOCAL

pytestmark = pytest.mark.django_db


def record(key: str, model: str = "configsync.systemconfig") -> ReplicatedRecord:
    return ReplicatedRecord.objects.get(model_label=model, natural_key=key)


def test_a_write_stamps_a_new_version_with_this_node_as_origin() -> None:
    system_config_set(key="A", value="1")
    first = record("A")
    assert first.origin_node == LOCAL and first.received_from == ""
    assert first.version_vector == {LOCAL: first.hlc}
    assert first.data is not None and first.data["value"] == "1"
    system_config_set(key="A", value="2")
    second = record("A")
    assert HLC.parse(second.hlc) > HLC.parse(first.hlc)
    assert second.seq > first.seq
    assert NodeClock.objects.get().last_seq == second.seq


def test_a_save_that_changes_nothing_is_not_a_new_version() -> None:
    system_config_set(key="A", value="1")
    before = record("A")
    system_config_set(key="A", value="1")
    assert record("A").seq == before.seq


def test_delete_leaves_a_tombstone() -> None:
    system_config_set(key="A", value="1")
    system_config_delete(key="A")
    tomb = record("A")
    assert tomb.deleted and tomb.data is None


def test_secrets_are_stored_as_ciphertext_only(canary: str) -> None:
    system_config_set(key="S", value=canary, is_sensitive=True)
    ai_provider_set(name="openai-main", kind="openai", api_key=canary)
    for rec in ReplicatedRecord.objects.all():
        assert canary not in str(rec.data)
    assert record("S").data["secret_value"].startswith("enc1:")
    assert record("openai-main", "providers.aiproviderconfig").data["api_key"].startswith("enc1:")
    with connection.cursor() as cursor:
        cursor.execute("SELECT data FROM configsync_replicatedrecord")
        assert all(canary not in str(row) for row in cursor.fetchall())


def test_change_committed_is_sent_after_commit_with_ids_only(
    django_capture_on_commit_callbacks: Any, canary: str
) -> None:
    seen: list[dict[str, Any]] = []

    def listener(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    change_committed.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            system_config_set(key="S", value=canary, is_sensitive=True)
        assert seen == []  # nothing before commit
        for callback in callbacks:
            callback()
    finally:
        change_committed.disconnect(listener)
    mine = [s for s in seen if s.get("natural_key") == "S"]
    assert len(mine) == 1
    event = mine[0]
    assert event["model_label"] == "configsync.systemconfig"
    assert event["local"] is True and event["deleted"] is False
    assert event["seq"] == record("S").seq
    assert canary not in repr(seen)


def test_rows_without_replication_metadata_get_a_first_version() -> None:
    from configsync.models import SystemConfig
    from configsync.replication.services.local import replication_backfill

    SystemConfig.objects.bulk_create([SystemConfig(key="OLD1"), SystemConfig(key="OLD2")])
    system_config_set(key="NEW", value="1")
    assert not ReplicatedRecord.objects.filter(natural_key__startswith="OLD").exists()
    assert replication_backfill() == 2
    assert set(
        ReplicatedRecord.objects.filter(deleted=False).values_list("natural_key", flat=True)
    ) == {"OLD1", "OLD2", "NEW"}
    assert replication_backfill() == 0


def test_a_local_write_supersedes_this_nodes_own_entry_even_after_its_clock_went_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restored from a backup taken while the clock ran ahead (the clock row went back with
    the database), with the physical clock corrected: the record still carries this node's
    later entry (e.g. re-received from a peer). A new local write must still dominate it, or
    every peer holding the later entry answers the write ``stale`` and the nodes disagree for
    good."""
    from configsync.models import NodeClock
    from configsync.replication.hlc import HLC, vv_leq
    from configsync.replication.services import clock

    system_config_set(key="K", value="v1")
    before = ReplicatedRecord.objects.get(natural_key="K")
    first = HLC.parse(before.hlc)
    NodeClock.objects.update(last_wall_ms=first.wall_ms - 120_000, last_logical=0)
    monkeypatch.setattr(clock, "physical_now_ms", lambda: first.wall_ms - 60_000)
    system_config_set(key="K", value="v2")
    after = ReplicatedRecord.objects.get(natural_key="K")
    assert HLC.parse(after.hlc) > first
    assert vv_leq(before.version_vector, after.version_vector)
    assert not vv_leq(after.version_vector, before.version_vector)
