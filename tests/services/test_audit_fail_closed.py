"""Fail closed: when the audit trail cannot be written, the write or reveal it would have
recorded does not happen — through the admin, the API, the command line, replication, the mode
switch and API keys — and the answer is clean (a JSON 503 or one line, never a value).

The trail is broken for real, by a database trigger refusing every insert into the audit table
(PostgreSQL and SQLite alike), not by a patched method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from configsync.models import (
    AuditEvent,
    RecordVersion,
    ReplicatedRecord,
    ServiceAPIKey,
    SystemConfig,
)
from configsync.replication.selectors.mode import deployment_mode_stored
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.mode import deployment_mode_set
from configsync.replication.services.rollback import record_rollback
from configsync.services.api_keys import api_key_create, api_key_revoke
from configsync.services.audit import AuditWriteError, audit_action
from configsync.services.system_config import system_config_set
from tests.support.admin import setting_form
from tests.support.api import key_client
from tests.support.audit import audit_break, audit_mend
from tests.support.cli import CliResult
from tests.support.replication import remote_change, use_replication_settings

pytestmark = pytest.mark.django_db

SYSTEM = "/api/v1/configs/system/"
TABLE = AuditEvent._meta.db_table


def snapshot() -> tuple[list[Any], int, int, int]:
    return (
        list(SystemConfig.objects.order_by("key").values_list("key", "value", "secret_value")),
        RecordVersion.objects.count(),
        ReplicatedRecord.objects.count(),
        AuditEvent.objects.count(),
    )


def test_the_trigger_really_breaks_the_trail(audit_down: None) -> None:
    with pytest.raises(AuditWriteError) as caught:
        audit_action(action="mode_switch", details={})
    assert "nothing was done" in str(caught.value)
    assert AuditEvent.objects.count() == 0  # the caller's transaction is still usable


def test_an_admin_write_is_refused(admin_user: Any, canary: str) -> None:
    record = system_config_set(key="ADMIN_TOKEN", value="old", is_sensitive=True)
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    before = snapshot()
    with connection.cursor() as cursor:
        audit_break(cursor)
    response = client.post(
        reverse("admin:configsync_systemconfig_change", args=[record.pk]),
        setting_form(record, value=canary),
    )
    assert response.status_code == 500
    assert canary.encode() not in response.content
    with connection.cursor() as cursor:
        audit_mend(cursor)
    assert snapshot() == before
    assert SystemConfig.objects.get(key="ADMIN_TOKEN").raw_value() == "old"


def test_an_api_write_is_refused_with_a_clean_503(canary: str) -> None:
    client = key_client(write=True)
    before = snapshot()
    with connection.cursor() as cursor:
        audit_break(cursor)
    response = client.post(
        SYSTEM, {"key": "API_TOKEN", "value": canary, "is_sensitive": True}, format="json"
    )
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "audit trail could not be written" in response.json()["detail"]
    assert canary.encode() not in response.content
    with connection.cursor() as cursor:
        audit_mend(cursor)
    assert snapshot() == before
    assert not SystemConfig.objects.filter(key="API_TOKEN").exists()


def test_an_api_reveal_is_refused_without_the_value(canary: str) -> None:
    system_config_set(key="REVEALED", value=canary, is_sensitive=True)
    client = key_client(reveal=True)
    with connection.cursor() as cursor:
        audit_break(cursor)
    single = client.get(f"{SYSTEM}REVEALED/", {"reveal": "true"})
    listing = client.get(SYSTEM, {"reveal": "true"})
    for response in (single, listing):
        assert response.status_code == 503
        assert canary.encode() not in response.content
        assert "audit trail" in response.json()["detail"]
    masked = client.get(f"{SYSTEM}REVEALED/")  # no reveal asked: nothing to audit, answered
    assert masked.status_code == 200 and canary.encode() not in masked.content
    with connection.cursor() as cursor:
        audit_mend(cursor)
    assert not AuditEvent.objects.filter(action="reveal").exists()


def test_a_cli_write_and_reveal_are_refused_in_one_line(
    audit_down: None, cli: Callable[..., CliResult], canary: str
) -> None:
    before = snapshot()
    result = cli("set", "CLI_TOKEN", "-", "--sensitive", stdin=canary)
    assert result.code == 1 and result.out == ""
    assert len(result.err.strip().splitlines()) == 1 and "audit trail" in result.err
    assert canary not in result.err
    assert snapshot()[:3] == before[:3]


def test_a_cli_reveal_is_refused(cli: Callable[..., CliResult], canary: str) -> None:
    system_config_set(key="CLI_SECRET", value=canary, is_sensitive=True)
    with connection.cursor() as cursor:
        audit_break(cursor)
    result = cli("get", "CLI_SECRET", "--reveal")
    assert result.code == 1
    assert canary not in result.out and canary not in result.err
    assert "audit trail" in result.err
    with connection.cursor() as cursor:
        audit_mend(cursor)


def test_a_peer_change_is_not_applied_nor_quarantined(audit_down: None, settings: Any) -> None:
    use_replication_settings(settings)
    before = snapshot()
    with pytest.raises(AuditWriteError):
        changes_apply(
            changes=[remote_change("FROM_PEER", "v")], source_node="node-remote", source_name="b"
        )
    assert snapshot()[:3] == before[:3]
    from configsync.models import QuarantinedChange

    assert not QuarantinedChange.objects.exists()  # the next sync brings it again


def test_a_mode_switch_is_refused(audit_down: None) -> None:
    before = deployment_mode_stored()
    with pytest.raises(AuditWriteError):
        deployment_mode_set(mode="LOCAL_ONLY", actor="user:ops")
    assert deployment_mode_stored() == before


def test_api_key_create_and_revoke_are_refused() -> None:
    record, _ = api_key_create(name="keep")
    with connection.cursor() as cursor:
        audit_break(cursor)
    with pytest.raises(AuditWriteError):
        api_key_revoke(prefix=record.prefix)
    with pytest.raises(AuditWriteError):
        api_key_create(name="new")
    with connection.cursor() as cursor:
        audit_mend(cursor)
    assert ServiceAPIKey.objects.get(prefix=record.prefix).revoked is False
    assert not ServiceAPIKey.objects.filter(name="new").exists()


def test_a_value_check_is_refused_without_an_answer(
    cli: Callable[..., CliResult], canary: str
) -> None:
    system_config_set(key="CHECKED", value=canary, is_sensitive=True)
    event = AuditEvent.objects.get(natural_key="CHECKED")
    with connection.cursor() as cursor:
        audit_break(cursor)
    result = cli("audit", "--value-of", str(event.pk), stdin=canary)
    assert result.code == 1 and "audit trail" in result.err
    assert "yes" not in result.out and canary not in result.out + result.err
    with connection.cursor() as cursor:
        audit_mend(cursor)


def test_a_rollback_and_a_restore_are_refused_in_one_line(
    cli: Callable[..., CliResult], canary: str, tmp_path: Any
) -> None:
    system_config_set(key="ROLLED", value=canary, is_sensitive=True)
    path = tmp_path / "backup.json"
    assert cli("snapshot", "--output", str(path)).code == 0
    system_config_set(key="ROLLED", value="sk-CANARY-second-0000", is_sensitive=True)
    before = snapshot()
    with connection.cursor() as cursor:
        audit_break(cursor)
    try:
        for args in (("rollback", "ROLLED", "1"), ("restore", str(path))):
            result = cli(*args)
            assert result.code == 1, args
            assert len(result.err.strip().splitlines()) == 1 and "audit trail" in result.err
            assert canary not in result.out + result.err
            assert snapshot() == before
    finally:
        with connection.cursor() as cursor:
            audit_mend(cursor)
    assert SystemConfig.objects.get(key="ROLLED").raw_value() == "sk-CANARY-second-0000"


def _break_reveals(cursor: Any) -> None:
    """Only reveal events fail (the rollback's own change event would be written)."""
    if connection.vendor == "postgresql":
        cursor.execute(
            "CREATE FUNCTION configsync_test_audit_down() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit trail down (test)'; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER configsync_test_audit_down BEFORE INSERT ON {TABLE} FOR EACH ROW "
            "WHEN (NEW.action = 'reveal') EXECUTE FUNCTION configsync_test_audit_down()"
        )
    else:
        cursor.execute(
            f"CREATE TRIGGER configsync_test_audit_down BEFORE INSERT ON {TABLE} "
            "WHEN NEW.action = 'reveal' BEGIN SELECT RAISE(ABORT, 'audit trail down (test)'); END"
        )


def test_a_revealing_rollback_is_refused_when_its_reveal_cannot_be_audited(
    canary: str,
) -> None:
    system_config_set(key="WAS_PLAIN", value=canary)
    system_config_set(
        key="WAS_PLAIN", value="sk-CANARY-now-0000", is_sensitive=True, allow_reveal=True
    )
    before = snapshot()
    with connection.cursor() as cursor:
        _break_reveals(cursor)
    try:
        with pytest.raises(AuditWriteError):
            record_rollback(
                model_label="configsync.systemconfig",
                natural_key="WAS_PLAIN",
                number=1,
                allow_reveal=True,
            )
        assert snapshot() == before
    finally:
        with connection.cursor() as cursor:
            audit_mend(cursor)
    assert SystemConfig.objects.get(key="WAS_PLAIN").is_sensitive
