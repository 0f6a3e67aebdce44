"""Applying remote changes: LWW, version vectors, idempotency, atomic refusal, unreadable keys."""

from __future__ import annotations

from typing import Any

import pytest

from configsync.crypto.keyring import generate_key, get_keyring, reset_keyring
from configsync.models import Conflict, QuarantinedChange, ReplicatedRecord, SystemConfig
from configsync.replication.errors import ChangeValidationError
from configsync.replication.hlc import HLC, physical_now_ms
from configsync.replication.selectors.feed import feed_page, records_unreadable
from configsync.replication.services.apply import changes_apply
from configsync.services.node import node_id
from configsync.services.system_config import system_config_set
from tests.support.replication import (
    LOCAL,
    OTHER,
    REMOTE,
    config_data,
    provider_data,
    remote_change,
    stamp,
)

pytestmark = pytest.mark.django_db


def apply(changes: list[dict[str, Any]], source: str = REMOTE) -> list[str]:
    results = changes_apply(changes=changes, source_node=source, source_name="peer")
    return [r.status for r in results]


def state() -> dict[str, Any]:
    return {
        "configs": sorted(SystemConfig.objects.values_list("key", "value")),
        "records": sorted(
            ReplicatedRecord.objects.values_list("natural_key", "hlc", "deleted", "seq")
        ),
        "conflicts": Conflict.objects.count(),
    }


def test_a_new_record_is_applied_with_its_own_timestamp_and_origin() -> None:
    change = remote_change("A", "remote")
    assert apply([change]) == ["applied"]
    assert SystemConfig.objects.get(key="A").value == "remote"
    rec = ReplicatedRecord.objects.get(natural_key="A")
    assert rec.hlc == change["hlc"] and rec.origin_node == REMOTE
    assert rec.received_from == REMOTE  # not stamped again as a local write


@pytest.mark.parametrize("times", [2, 10])
def test_applying_the_same_batch_again_changes_nothing(times: int) -> None:
    batch = [remote_change("A", "1"), remote_change("B", "2"), remote_change("C", deleted=True)]
    assert apply(batch) == ["applied", "applied", "applied"]
    once = state()
    for _ in range(times - 1):
        assert apply(batch) == ["stale", "stale", "stale"]
    assert state() == once


def test_a_newer_version_that_saw_ours_fast_forwards() -> None:
    system_config_set(key="A", value="local")
    mine = ReplicatedRecord.objects.get(natural_key="A")
    newer = stamp(REMOTE)
    change = remote_change("A", "remote", hlc=newer, vv={LOCAL: mine.hlc, REMOTE: newer})
    assert apply([change]) == ["applied"]
    assert SystemConfig.objects.get(key="A").value == "remote"
    assert Conflict.objects.count() == 0


def test_an_older_version_we_already_include_is_stale() -> None:
    old = stamp(REMOTE, wall=physical_now_ms() - 10_000)
    apply([remote_change("A", "old", hlc=old)])
    system_config_set(key="A", value="local-edit")
    assert apply([remote_change("A", "old", hlc=old)]) == ["stale"]
    assert SystemConfig.objects.get(key="A").value == "local-edit"


def test_concurrent_versions_converge_on_lww_and_keep_the_loser() -> None:
    system_config_set(key="A", value="local")
    later = stamp(REMOTE, wall=physical_now_ms() + 1000)
    assert apply([remote_change("A", "remote", hlc=later)]) == ["conflict"]
    assert SystemConfig.objects.get(key="A").value == "remote"
    conflict = Conflict.objects.get()
    assert conflict.winner == "remote" and conflict.source == "peer"
    assert conflict.local_version["data"]["value"] == "local"
    rec = ReplicatedRecord.objects.get(natural_key="A")
    assert set(rec.version_vector) == {LOCAL, REMOTE}
    # The merged version goes back to the source too (it carries the loser).
    assert rec.received_from == ""
    item = next(
        c for c in feed_page(node=node_id(), cursor="", limit=10).changes if c["key"] == "A"
    )
    assert [loser["hlc"] for loser in item["losers"]] == [conflict.local_version["hlc"]]
    # Re-delivery is stale and keeps one conflict.
    assert apply([remote_change("A", "remote", hlc=later)]) == ["stale"]
    assert Conflict.objects.count() == 1


def test_concurrent_older_remote_loses_and_local_value_stays() -> None:
    earlier = stamp(REMOTE, wall=physical_now_ms() - 60_000)
    system_config_set(key="A", value="local")
    assert apply([remote_change("A", "remote", hlc=earlier)]) == ["conflict"]
    assert SystemConfig.objects.get(key="A").value == "local"
    assert Conflict.objects.get().winner == "local"


def test_the_source_keeps_the_same_conflict_from_the_losers_it_receives() -> None:
    """Node B's own version lost on node A: B learns it from A's merged version."""
    mine = system_config_set(key="A", value="local")
    assert mine.pk
    local_hlc = ReplicatedRecord.objects.get(natural_key="A").hlc
    winner_hlc = stamp(REMOTE, wall=physical_now_ms() + 1000)
    local_loser = {
        "hlc": local_hlc,
        "origin": LOCAL,
        "deleted": False,
        "data": config_data("A", "local"),
    }
    merged = remote_change(
        "A",
        "remote",
        hlc=winner_hlc,
        vv={LOCAL: local_hlc, REMOTE: winner_hlc},
        losers=[local_loser],
    )
    assert apply([merged]) == ["applied"]
    assert SystemConfig.objects.get(key="A").value == "remote"
    conflict = Conflict.objects.get()
    assert conflict.winner == "remote" and conflict.local_version["hlc"] == local_hlc
    assert apply([merged]) == ["stale"]
    assert Conflict.objects.count() == 1


def test_delete_versus_update_at_an_equal_instant_the_delete_wins_everywhere() -> None:
    wall = physical_now_ms()
    update = remote_change("A", "upd", hlc=str(HLC(wall, 0, "node-zzz")), node="node-zzz")
    delete = remote_change("A", hlc=str(HLC(wall, 0, "node-aaa")), node="node-aaa", deleted=True)
    assert apply([update], source="node-zzz") == ["applied"]
    assert apply([delete], source="node-aaa") == ["conflict"]
    assert not SystemConfig.objects.filter(key="A").exists()
    assert ReplicatedRecord.objects.get(natural_key="A").deleted


def test_delete_versus_update_order_of_arrival_does_not_matter() -> None:
    wall = physical_now_ms()
    update = remote_change("A", "upd", hlc=str(HLC(wall, 0, "node-zzz")), node="node-zzz")
    delete = remote_change("A", hlc=str(HLC(wall, 0, "node-aaa")), node="node-aaa", deleted=True)
    assert apply([delete], source="node-aaa") == ["applied"]
    assert apply([update], source="node-zzz") == ["conflict"]
    assert not SystemConfig.objects.filter(key="A").exists()


def test_applied_remote_changes_advance_the_local_clock() -> None:
    ahead = stamp(REMOTE, wall=physical_now_ms() + 60_000)
    apply([remote_change("A", hlc=ahead)])
    system_config_set(key="B", value="after")
    assert HLC.parse(ReplicatedRecord.objects.get(natural_key="B").hlc) > HLC.parse(ahead)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c: c.update(model="sessions.session"), "unknown model"),
        (lambda c: c.update(model=5), "model must be a string"),
        (lambda c: c.update(hlc="yesterday"), "hlc"),
        (lambda c: c.update(deleted="no"), "deleted"),
        (lambda c: c.update(vv=[]), "vv"),
        (lambda c: c["data"].update(value_type="complex"), "value_type"),
        (lambda c: c["data"].update(is_sensitive="maybe"), "is_sensitive"),
        (lambda c: c["data"].update(nope=1), "unknown fields"),
        (lambda c: c["data"].update(secret_value="plaintext!"), "ciphertext"),
        (lambda c: c["data"].update(key="OTHER"), "does not match"),
        (lambda c: c.update(key=""), "key"),
        (lambda c: c.update(data="text"), "data must be an object"),
    ],
)
def test_one_malformed_item_is_quarantined_and_the_rest_applies(mutate: Any, reason: str) -> None:
    good = remote_change("GOOD", "1")
    bad = remote_change("BAD", "2")
    mutate(bad)
    results = changes_apply(changes=[good, bad], source_node=REMOTE, source_name="peer")
    assert [r.status for r in results] == ["applied", "quarantined"]
    assert reason in results[1].reason and results[1].index == 1
    assert list(SystemConfig.objects.values_list("key", flat=True)) == ["GOOD"]
    kept = QuarantinedChange.objects.get()
    assert reason in kept.reason and kept.status == "open" and kept.source == "peer"


def test_a_timestamp_too_far_ahead_is_held_as_clock_skew(settings: Any) -> None:
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 300
    future = stamp(REMOTE, wall=physical_now_ms() + 301_000)
    results = changes_apply(
        changes=[remote_change("A", hlc=future)], source_node=REMOTE, source_name="peer"
    )
    assert results[0].status == "quarantined" and results[0].reason.startswith("clock skew")
    assert not ReplicatedRecord.objects.exists()
    within = stamp(REMOTE, wall=physical_now_ms() + 250_000)
    assert apply([remote_change("A", hlc=within)]) == ["applied"]


def test_oversize_batches_are_refused_and_duplicates_quarantined(settings: Any) -> None:
    settings.CONFIGSYNC_MAX_PUSH_BATCH = 3
    with pytest.raises(ChangeValidationError, match="exceeds"):
        apply([remote_change(f"K{i}") for i in range(4)])
    assert not ReplicatedRecord.objects.exists()
    assert apply([remote_change("A"), remote_change("A", "x")]) == ["applied", "quarantined"]
    assert "twice" in QuarantinedChange.objects.get().reason
    with pytest.raises(ChangeValidationError):
        changes_apply(changes={"not": "a list"}, source_node=REMOTE, source_name="peer")


def test_ciphertext_of_a_missing_key_is_stored_relayed_and_reported(
    settings: Any, canary: str
) -> None:
    """A node whose keyring lacks the key stores and relays the value, and says so."""
    their_key, our_key = generate_key(), generate_key()
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [their_key]
    reset_keyring()
    foreign = SystemConfig(key="S", is_sensitive=True)
    token = get_keyring().encrypt(canary, context="configsync.systemconfig.secret_value:S")
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [our_key]  # this node: another key
    reset_keyring()
    assert foreign.key == "S"
    change = remote_change("S", data=config_data("S", "", secret_value=token, is_sensitive=True))
    results = changes_apply(changes=[change], source_node=REMOTE, source_name="peer")
    assert results[0].status == "applied" and results[0].unreadable
    assert records_unreadable() == [
        {"model": "configsync.systemconfig", "key": "S", "fields": ["secret_value"]}
    ]
    relayed = next(
        c for c in feed_page(node=node_id(), cursor="", limit=10).changes if c["key"] == "S"
    )
    assert relayed["data"]["secret_value"] == token  # byte for byte, never decrypted
    assert canary not in str(relayed)
    # The operator adds the group's key: the record becomes readable, the report clears.
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [our_key, their_key]
    reset_keyring()
    assert records_unreadable() == []
    assert SystemConfig.objects.get(key="S").secret_value == canary


def test_a_sensitive_value_travels_as_ciphertext_and_decrypts_on_the_receiver(
    canary: str,
) -> None:
    token = get_keyring().encrypt(canary, context="configsync.systemconfig.secret_value:S")
    change = remote_change("S", data=config_data("S", "", secret_value=token, is_sensitive=True))
    assert apply([change]) == ["applied"]
    assert SystemConfig.objects.get(key="S").secret_value == canary
    assert ReplicatedRecord.objects.get(natural_key="S").data["secret_value"] == token


def test_changes_of_ai_providers_replicate(canary: str) -> None:
    token = get_keyring().encrypt(canary, context="providers.aiproviderconfig.api_key:main")
    data = provider_data("main", api_key=token)
    change = remote_change("main", model="providers.aiproviderconfig", data=data)
    assert apply([change]) == ["applied"]
    from providers.models import AIProviderConfig

    assert AIProviderConfig.objects.get(name="main").api_key == canary


def test_three_nodes_converge_whatever_the_order(django_db_blocker: Any) -> None:
    """Three concurrent versions: every arrival order leaves the LWW maximum."""
    wall = physical_now_ms()
    versions = [
        remote_change("A", "a", node=REMOTE, hlc=str(HLC(wall, 0, REMOTE))),
        remote_change("A", "b", node=OTHER, hlc=str(HLC(wall, 1, OTHER))),
        remote_change("A", "c", node="node-third", hlc=str(HLC(wall - 5, 9, "node-third"))),
    ]
    for first, second, third in ((0, 1, 2), (2, 1, 0), (1, 0, 2)):
        SystemConfig.objects.all().delete()
        ReplicatedRecord.objects.all().delete()
        Conflict.objects.all().delete()
        for index in (first, second, third):
            apply([versions[index]], source=versions[index]["origin"])
        assert SystemConfig.objects.get(key="A").value == "b"
        assert Conflict.objects.count() == 2


def test_the_same_version_with_concurrent_vectors_joins_them_without_a_conflict() -> None:
    """With three nodes, one winner can arrive merged with different losers on each path."""
    wall = physical_now_ms()
    winner = str(HLC(wall, 5, REMOTE))
    loser_a = str(HLC(wall, 1, "node-a"))
    loser_c = str(HLC(wall, 2, "node-c"))
    via_a = remote_change("A", "w", hlc=winner, vv={REMOTE: winner, "node-a": loser_a})
    via_c = remote_change("A", "w", hlc=winner, vv={REMOTE: winner, "node-c": loser_c})
    assert apply([via_a], source="node-a") == ["applied"]
    assert apply([via_c], source="node-c") == ["applied"]
    rec = ReplicatedRecord.objects.get(natural_key="A")
    assert set(rec.version_vector) == {REMOTE, "node-a", "node-c"} and rec.hlc == winner
    assert Conflict.objects.count() == 0
    assert apply([via_a], source="node-a") == ["stale"]


def test_a_received_default_provider_clears_the_local_default(canary: str) -> None:
    """Two nodes each made a different provider the default: both converge, nothing is stuck."""
    from providers.models import AIProviderConfig
    from providers.services import ai_provider_set

    ai_provider_set(name="local-one", kind="openai", api_key=canary, is_default=True)
    data = provider_data(
        "remote-one", kind="ollama", base_url="http://127.0.0.1:11434", is_default=True
    )
    change = remote_change("remote-one", model="providers.aiproviderconfig", data=data)
    assert apply([change]) == ["applied"]
    assert list(
        AIProviderConfig.objects.filter(is_default=True).values_list("name", flat=True)
    ) == ["remote-one"]
    cleared = ReplicatedRecord.objects.get(natural_key="local-one")
    assert cleared.origin_node == LOCAL and cleared.data["is_default"] is False  # replicates


def test_refusal_reasons_never_quote_the_refused_value() -> None:
    bad = remote_change("A")
    bad["data"]["value_type"] = "sk-CANARY-in-a-type"
    (result,) = changes_apply(changes=[bad], source_node=REMOTE, source_name="peer")
    assert "value_type: invalid (invalid_choice)" in result.reason
    assert "CANARY" not in result.reason
    assert "CANARY" not in QuarantinedChange.objects.get().reason
