"""Quarantined changes in the API, the admin, the CLI and the beat: visible, never a value."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from configsync.crypto.keyring import get_keyring
from configsync.models import QuarantinedChange, SystemConfig
from configsync.replication.hlc import physical_now_ms
from configsync.replication.selectors.quarantine import quarantine_open_count
from configsync.replication.services.apply import changes_apply
from configsync.tasks import sync_all_peers
from tests.support.replication import REMOTE, config_data, remote_change, stamp

pytestmark = pytest.mark.django_db

LIST = "/api/v1/sync/quarantine/"


def quarantine_poison(canary: str) -> QuarantinedChange:
    """Quarantine an item holding a canary as a plain value and a secret's token."""
    token = get_keyring().encrypt(canary, context="configsync.systemconfig.secret_value:OTHER")
    items = [
        remote_change("BAD", data=config_data("BAD", value=canary, value_type="int")),
        remote_change("S", data=config_data("S", "", secret_value=token, is_sensitive=True)),
    ]
    results = changes_apply(changes=items, source_node=REMOTE, source_name="peer-b")
    assert [r.status for r in results] == ["quarantined", "quarantined"]
    return QuarantinedChange.objects.get(natural_key="BAD")


def test_the_api_lists_quarantined_changes_without_values(
    client_for: Callable[[str], APIClient],
    canary: str,
) -> None:
    quarantine_poison(canary)
    assert client_for("anonymous").get(LIST).status_code == 401
    response = client_for("read").get(LIST)
    assert response.status_code == 200
    rows = response.json()
    assert {r["key"] for r in rows} == {"BAD", "S"}
    assert all(r["source"] == "peer-b" and r["status"] == "open" for r in rows)
    assert canary not in response.content.decode() and "enc1:" not in response.content.decode()
    assert client_for("read").get(LIST + "?status=bogus").status_code == 400
    assert len(client_for("read").get(LIST + "?status=all").json()) == 2


def test_retry_and_drop_need_the_write_scope(
    client_for: Callable[[str], APIClient],
    canary: str,
) -> None:
    row = quarantine_poison(canary)
    reader, writer = client_for("read"), client_for("write")
    assert reader.post(f"{LIST}{row.pk}/retry").status_code == 403
    assert reader.post(f"{LIST}{row.pk}/drop").status_code == 403
    retried = writer.post(f"{LIST}{row.pk}/retry")
    assert retried.status_code == 200
    assert retried.json()["status"] == "quarantined" and canary not in retried.content.decode()
    dropped = writer.post(f"{LIST}{row.pk}/drop")
    assert dropped.status_code == 200 and dropped.json()["status"] == "dropped"
    assert writer.post(f"{LIST}999999/retry").status_code == 404
    assert quarantine_open_count() == 1


def test_the_admin_shows_quarantine_read_only_with_actions(
    admin_client: Client, canary: str
) -> None:
    row = quarantine_poison(canary)
    changelist = admin_client.get("/admin/configsync/quarantinedchange/")
    assert changelist.status_code == 200
    assert "BAD" in changelist.content.decode() and canary not in changelist.content.decode()
    detail = admin_client.get(f"/admin/configsync/quarantinedchange/{row.pk}/change/")
    assert detail.status_code == 200 and canary not in detail.content.decode()
    assert "enc1:" not in detail.content.decode()
    admin_client.post(
        "/admin/configsync/quarantinedchange/",
        {"action": "drop_selected", "_selected_action": [row.pk]},
    )
    assert QuarantinedChange.objects.get(pk=row.pk).status == "dropped"
    admin_client.post(
        "/admin/configsync/quarantinedchange/",
        {"action": "retry_selected", "_selected_action": [row.pk]},
    )
    assert QuarantinedChange.objects.get(pk=row.pk).status == "open"  # retried, failed again


def test_the_cli_lists_retries_and_drops(cli: Any, canary: str) -> None:
    row = quarantine_poison(canary)
    listing = cli("quarantine")
    assert listing.code == 0 and "BAD" in listing.out and canary not in listing.out
    rows = json.loads(cli("quarantine", "--json").out)
    assert {r["key"] for r in rows} == {"BAD", "S"} and canary not in json.dumps(rows)
    failed = cli("quarantine", "retry", str(row.pk))
    assert failed.code == 1 and "still cannot be stored" in failed.err and canary not in failed.err
    assert cli("quarantine", "drop", str(row.pk)).code == 0
    assert QuarantinedChange.objects.get(pk=row.pk).status == "dropped"
    assert cli("quarantine", "drop", "999999").code == 1


def test_the_beat_retries_open_items(settings: Any) -> None:
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 300
    future = remote_change("F", "v", hlc=stamp(REMOTE, wall=physical_now_ms() + 400_000))
    changes_apply(changes=[future], source_node=REMOTE, source_name="peer-b")
    assert quarantine_open_count() == 1
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 900
    sync_all_peers()
    assert quarantine_open_count() == 0 and SystemConfig.objects.get(key="F").value == "v"


def test_a_secret_a_peer_sent_in_plain_is_not_kept_in_plain(canary: str) -> None:
    """A sensitive setting's plain ``value``, a non-token ``secret_value`` or provider
    ``api_key`` (a buggy peer): quarantined with the secret masked in the stored payload (and in
    a loser's data), and a retry keeps it quarantined for the same reason."""
    from tests.support.replication import provider_data

    bad_plain = remote_change("P", data=config_data("P", canary, is_sensitive=True))
    bad_plain["losers"] = [{"hlc": stamp(), "data": config_data("P", canary, is_sensitive=True)}]
    items = [
        bad_plain,
        remote_change("T", data=config_data("T", "", is_sensitive=True, secret_value=canary)),
        remote_change(
            "prov",
            model="providers.aiproviderconfig",
            data=provider_data("prov", api_key=canary),
        ),
    ]
    results = changes_apply(changes=items, source_node=REMOTE, source_name="peer-b")
    assert [r.status for r in results] == ["quarantined"] * 3
    rows = list(QuarantinedChange.objects.order_by("natural_key"))
    assert len(rows) == 3
    for row in rows:
        assert canary not in row.payload and "********" in row.payload, row.natural_key
    reasons = {row.natural_key: row.reason for row in rows}
    from configsync.replication.services.quarantine import quarantine_retry

    for row in rows:
        quarantine_retry(quarantine_id=row.pk)
    for row in QuarantinedChange.objects.all():
        assert row.status == "open" and row.reason == reasons[row.natural_key]
    assert not SystemConfig.objects.filter(key__in=["P", "T"]).exists()
