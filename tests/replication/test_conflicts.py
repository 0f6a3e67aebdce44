"""Resolving conflicts (service, CLI) and what the admin shows of them."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from configsync.models import Conflict, ReplicatedRecord, SystemConfig
from configsync.replication.errors import ConflictResolveError
from configsync.replication.hlc import physical_now_ms
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.conflicts import conflict_resolve
from configsync.services.node import node_id
from configsync.services.system_config import system_config_set
from tests.support.replication import LOCAL, REMOTE, remote_change, stamp

pytestmark = pytest.mark.django_db


def make_conflict(*, remote_deleted: bool = False, value: str = "local") -> Conflict:
    system_config_set(key="K", value=value, is_sensitive=value.startswith("sk-"))
    later = stamp(REMOTE, wall=physical_now_ms() + 1000)
    change = remote_change("K", "remote", hlc=later, deleted=remote_deleted)
    changes_apply(changes=[change], source_node=REMOTE, source_name="peer")
    return Conflict.objects.get()


def test_resolving_to_the_loser_writes_it_as_a_new_local_change() -> None:
    conflict = make_conflict()
    before = ReplicatedRecord.objects.get(natural_key="K")
    resolved = conflict_resolve(conflict_id=conflict.pk, choice="local")
    assert resolved.status == "resolved" and resolved.resolution == "local"
    after = ReplicatedRecord.objects.get(natural_key="K")
    assert SystemConfig.objects.get(key="K").value == "local"
    assert after.origin_node == LOCAL and after.hlc > before.hlc
    assert after.version_vector[REMOTE] == before.version_vector[REMOTE]  # dominates both


def test_resolving_to_the_winner_still_replicates_a_new_version() -> None:
    conflict = make_conflict()
    before = ReplicatedRecord.objects.get(natural_key="K")
    conflict_resolve(conflict_id=conflict.pk, choice="remote")
    after = ReplicatedRecord.objects.get(natural_key="K")
    assert SystemConfig.objects.get(key="K").value == "remote"
    assert after.seq > before.seq and after.origin_node == LOCAL


def test_choosing_a_tombstone_deletes() -> None:
    conflict = make_conflict(remote_deleted=True)
    assert not SystemConfig.objects.filter(key="K").exists()  # the delete won
    conflict_resolve(conflict_id=conflict.pk, choice="local")
    assert SystemConfig.objects.get(key="K").value == "local"
    other = Conflict.objects.create(
        model_label="configsync.systemconfig",
        natural_key="K",
        source="peer",
        local_version=conflict.local_version,
        remote_version=conflict.remote_version,
        winner="local",
    )
    before = ReplicatedRecord.objects.get(natural_key="K").seq
    conflict_resolve(conflict_id=other.pk, choice="remote")
    assert not SystemConfig.objects.filter(key="K").exists()
    tomb = ReplicatedRecord.objects.get(natural_key="K")
    assert tomb.deleted and tomb.seq > before


@pytest.mark.parametrize("choice", ["both", ""])
def test_bad_choices_and_repeats_are_refused(choice: str) -> None:
    conflict = make_conflict()
    with pytest.raises(ConflictResolveError):
        conflict_resolve(conflict_id=conflict.pk, choice=choice)
    with pytest.raises(ConflictResolveError):
        conflict_resolve(conflict_id=99999, choice="local")
    conflict_resolve(conflict_id=conflict.pk, choice="remote")
    with pytest.raises(ConflictResolveError, match="already"):
        conflict_resolve(conflict_id=conflict.pk, choice="local")


def test_cli_conflicts_and_resolve(canary: str, capsys: Any) -> None:
    conflict = make_conflict(value=canary)
    out = StringIO()
    call_command("configsync", "conflicts", "--json", stdout=out)
    assert f'"id": {conflict.pk}' in out.getvalue()
    assert canary not in out.getvalue() and "enc1:" not in out.getvalue()
    out = StringIO()
    call_command("configsync", "conflicts", stdout=out)
    assert "secret_value" in out.getvalue() and canary not in out.getvalue()
    out = StringIO()
    call_command("configsync", "resolve", str(conflict.pk), "local", stdout=out)
    assert "resolved" in out.getvalue()
    assert SystemConfig.objects.get(key="K").secret_value == canary
    with pytest.raises(SystemExit):
        call_command("configsync", "resolve", str(conflict.pk), "local")
    assert "already resolved" in capsys.readouterr().err


def test_admin_shows_conflicts_without_values(admin_client: Any, canary: str) -> None:
    conflict = make_conflict(value=canary)
    for url in (
        "/admin/configsync/conflict/",
        f"/admin/configsync/conflict/{conflict.pk}/change/",
        "/admin/configsync/peer/",
        "/admin/configsync/syncrun/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        assert canary not in text and "enc1:" not in text
    response = admin_client.post(
        "/admin/configsync/conflict/",
        {"action": "resolve_keep_local", "_selected_action": [conflict.pk]},
    )
    assert response.status_code == 302
    assert Conflict.objects.get().status == "resolved"
    assert SystemConfig.objects.get(key="K").secret_value == canary


def test_a_resolution_made_elsewhere_closes_the_same_conflict_here() -> None:
    from configsync.replication.selectors.feed import feed_page

    conflict = make_conflict()  # here: local lost to REMOTE's version
    pair = sorted([conflict.local_version["hlc"], conflict.remote_version["hlc"]])
    current = ReplicatedRecord.objects.get(natural_key="K")
    # REMOTE resolved it keeping our (local) version: its new change carries the note.
    resolution = stamp(REMOTE, wall=physical_now_ms() + 2000)
    change = remote_change(
        "K",
        "local",
        hlc=resolution,
        vv={**current.version_vector, REMOTE: resolution},
        losers=[],
    )
    change["resolved"] = [{"versions": pair, "chosen": conflict.local_version["hlc"]}]
    changes_apply(changes=[change], source_node=REMOTE, source_name="peer")
    closed = Conflict.objects.get()
    assert closed.status == "resolved" and closed.resolution == "local"
    assert closed.resolved_hlc == resolution
    assert SystemConfig.objects.get(key="K").value == "local"
    # This node relays the note with the same change, for the nodes behind it.
    item = next(
        c for c in feed_page(node=node_id(), cursor="", limit=10).changes if c["key"] == "K"
    )
    assert item["resolved"] == change["resolved"]


def test_a_resolution_here_is_announced_with_its_change() -> None:
    from configsync.replication.selectors.feed import feed_page

    conflict = make_conflict()
    conflict_resolve(conflict_id=conflict.pk, choice="local")
    item = next(
        c for c in feed_page(node=node_id(), cursor="", limit=10).changes if c["key"] == "K"
    )
    assert item["resolved"] == [
        {
            "versions": sorted([conflict.local_version["hlc"], conflict.remote_version["hlc"]]),
            "chosen": conflict.local_version["hlc"],
        }
    ]


def test_malformed_resolution_notes_quarantine_the_item() -> None:
    change = remote_change("K")
    change["resolved"] = [{"versions": ["x"], "chosen": "y"}]
    (result,) = changes_apply(changes=[change], source_node=REMOTE, source_name="peer")
    assert result.status == "quarantined" and "resolved" in result.reason
    assert not ReplicatedRecord.objects.exists()
