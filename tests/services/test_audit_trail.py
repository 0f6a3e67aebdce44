"""The proof of the audit trail: an entry for every kind of change, with the right actor and
entry point, and no plaintext secret anywhere in it (plain, base64 or URL-encoded); a sensitive
change's keyed hash answers "was it this value?".

Every kind writes its own canary so a leak names its path.
"""

from __future__ import annotations

import ast
import base64
import json
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse

from configsync.cli.config import cli_actor
from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import generate_key, get_keyring, parse_key, reset_keyring
from configsync.envbridge.service import env_import
from configsync.models import AuditEvent, RecordVersion, ServiceAPIKey, SystemConfig
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.conflicts import conflict_create, conflict_resolve
from configsync.replication.services.mode import deployment_mode_set
from configsync.services.audit import audit_value_matches
from configsync.services.node import node_id
from configsync.services.system_config import system_config_set
from tests.support.admin import setting_form
from tests.support.api import key_client
from tests.support.cli import CliResult
from tests.support.replication import (
    REMOTE,
    config_data,
    remote_change,
    stamp,
    use_replication_settings,
)

pytestmark = pytest.mark.django_db

SYSTEM = "/api/v1/configs/system/"
SETTING_LABEL = "configsync.systemconfig"


def canary_for(kind: str) -> str:
    return f"sk-CANARY-audit-{kind}-0000"


def encoded_forms(secret: str) -> dict[str, str]:
    """``secret`` as it could hide in text: plain, URL-encoded, and base64 (standard and URL-safe,
    at each of the three byte alignments it can take inside a longer encoded string; the
    partial characters at the edges are dropped)."""
    forms = {
        "plain": secret,
        "url": urllib.parse.quote(secret, safe=""),
        "url-plus": urllib.parse.quote_plus(secret),
    }
    raw = secret.encode()
    for shift in range(3):
        for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            text = encode(b"\0" * shift + raw).decode().rstrip("=")
            start = (shift * 4 + 2) // 3 if shift else 0
            forms[f"{name}-{shift}"] = text[start:-2]
    return forms


def assert_nowhere(texts: dict[str, str], secrets: list[str]) -> None:
    for secret in secrets:
        for form, encoded in encoded_forms(secret).items():
            assert len(encoded) >= 16, (secret, form)
            for where, text in texts.items():
                assert encoded not in text, f"{secret} ({form}) in {where}"


def the_trail() -> dict[str, str]:
    """Every audit event and every kept version, serialised whole."""
    return {
        f"audit event {event.pk}": json.dumps(model_to_dict(event), default=str)
        for event in AuditEvent.objects.all()
    } | {
        f"version {version.pk}": json.dumps(model_to_dict(version), default=str)
        for version in RecordVersion.objects.all()
    }


def events_of(key: str, **filters: Any) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(natural_key=key, **filters)
        .exclude(action="reveal")
        .order_by("id")
    )


def last_change(key: str) -> AuditEvent:
    found = events_of(key)
    assert found, f"no audit event for {key}"
    return found[-1]


def assert_hash_answers(event: AuditEvent, field: str, value: str) -> None:
    stored = event.value_hashes[field]
    assert stored.startswith("hmac1:")
    assert audit_value_matches(stored, value) is True
    assert audit_value_matches(stored, value + "x") is False


@pytest.fixture
def replication(settings: Any) -> None:
    use_replication_settings(settings)


# -- every kind of change ------------------------------------------------------------------------


def test_admin_change_is_audited_as_the_user_via_admin(admin_client: Client) -> None:
    secret = canary_for("admin")
    record = system_config_set(
        key="ADMIN_TOKEN", value="sk-CANARY-audit-old-0000", is_sensitive=True
    )
    response = admin_client.post(
        reverse("admin:configsync_systemconfig_change", args=[record.pk]),
        setting_form(record, value=secret),
    )
    assert response.status_code == 302
    event = last_change("ADMIN_TOKEN")
    assert (event.actor, event.via, event.action) == ("user:admin", "admin", "update")
    assert event.model_label == SETTING_LABEL and event.node_id
    assert "secret_value" in event.changed_fields
    assert_hash_answers(event, "secret_value", secret)
    assert_nowhere(the_trail(), [secret, "sk-CANARY-audit-old-0000"])


def test_api_change_is_audited_as_the_key_via_api() -> None:
    secret = canary_for("api")
    client = key_client(write=True, name="deployer")
    prefix = ServiceAPIKey.objects.get(name="deployer").prefix
    created = client.post(
        SYSTEM, {"key": "API_TOKEN", "value": secret, "is_sensitive": True}, format="json"
    )
    assert created.status_code == 201
    event = last_change("API_TOKEN")
    assert (event.actor, event.via, event.action) == (
        f"api-key:deployer ({prefix})",
        "api",
        "create",
    )
    assert_hash_answers(event, "secret_value", secret)
    assert_nowhere(the_trail(), [secret])


def test_cli_change_is_audited_as_the_login_via_cli(cli: Callable[..., CliResult]) -> None:
    secret = canary_for("cli")
    result = cli("set", "CLI_TOKEN", "-", "--sensitive", stdin=secret)
    assert result.code == 0, result.err
    event = last_change("CLI_TOKEN")
    assert (event.actor, event.via, event.action) == (cli_actor(), "cli", "create")
    assert event.actor.startswith("cli:")
    assert_hash_answers(event, "secret_value", secret)
    assert_nowhere(the_trail(), [secret])


def test_a_peer_change_is_audited_as_the_peer_via_peer(replication: None) -> None:
    secret = canary_for("peer")
    token = get_keyring().encrypt(
        secret,
        context=encryption_context_for(
            model_label=SETTING_LABEL, field_name="secret_value", natural_key="PEER_TOKEN"
        ),
    )
    data = config_data("PEER_TOKEN", "", secret_value=token, is_sensitive=True)
    results = changes_apply(
        changes=[remote_change("PEER_TOKEN", data=data), remote_change("PEER_PLAIN", "hello")],
        source_node=REMOTE,
        source_name="node-b",
    )
    assert [r.status for r in results] == ["applied", "applied"]
    event = last_change("PEER_TOKEN")
    assert (event.actor, event.via, event.action) == ("peer:node-b", "peer", "create")
    assert event.origin_node == REMOTE and event.hlc
    assert_hash_answers(event, "secret_value", secret)
    plain = last_change("PEER_PLAIN")
    assert plain.via == "peer" and plain.value_hashes == {} and "value" in plain.changed_fields
    assert_nowhere(the_trail(), [secret])


def test_the_env_bridge_is_audited_via_envbridge(tmp_path: Path) -> None:
    secret = canary_for("env")
    path = tmp_path / "app.env"
    path.write_text(f"ENV_API_TOKEN={secret}\nENV_PLAIN=visible\n")
    path.chmod(0o600)
    env_import(path=str(path))
    event = last_change("ENV_API_TOKEN")
    assert (event.via, event.action) == ("envbridge", "create")
    assert SystemConfig.objects.get(key="ENV_API_TOKEN").is_sensitive
    assert_hash_answers(event, "secret_value", secret)
    assert last_change("ENV_PLAIN").via == "envbridge"
    assert_nowhere(the_trail(), [secret])


def test_an_import_is_audited_via_import(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    secret = canary_for("import")
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            [
                {"key": "IMPORTED_TOKEN", "value": secret, "is_sensitive": True},
                {"key": "IMPORTED_PLAIN", "value": "x"},
            ]
        )
    )
    result = cli("import", str(path))
    assert result.code == 0, result.err
    event = last_change("IMPORTED_TOKEN")
    assert (event.actor, event.via) == (cli_actor(), "import")
    assert_hash_answers(event, "secret_value", secret)
    assert_nowhere(the_trail(), [secret])


def test_conflict_resolution_is_audited_via_resolve(replication: None) -> None:
    system_config_set(key="CONTESTED", value="local")
    local = {"hlc": stamp("node-local"), "origin": "node-local", "deleted": False,
             "data": config_data("CONTESTED", "local")}  # fmt: skip
    remote = {"hlc": stamp(REMOTE), "origin": REMOTE, "deleted": False,
              "data": config_data("CONTESTED", "remote")}  # fmt: skip
    conflict = conflict_create(
        model_label=SETTING_LABEL,
        natural_key="CONTESTED",
        source="node-b",
        local_version=local,
        remote_version=remote,
        winner="local",
    )
    conflict_resolve(conflict_id=conflict.pk, choice="remote")
    event = last_change("CONTESTED")
    assert (event.via, event.action, event.changed_fields) == ("resolve", "update", ["value"])
    assert SystemConfig.objects.get(key="CONTESTED").raw_value() == "remote"


def test_a_mode_switch_is_audited_with_from_and_to() -> None:
    deployment_mode_set(mode="LOCAL_ONLY", actor="user:ops")
    deployment_mode_set(mode="LOCAL_ONLY", actor="user:ops")  # no change: no event
    deployment_mode_set(mode="", actor="cli:root")
    events = list(AuditEvent.objects.filter(action="mode_switch").order_by("id"))
    assert [(e.actor, e.details) for e in events] == [
        ("user:ops", {"from": "settings", "to": "LOCAL_ONLY"}),
        ("cli:root", {"from": "LOCAL_ONLY", "to": "settings"}),
    ]
    assert all(e.node_id and e.model_label == "" for e in events)


def test_a_reveal_is_audited_as_the_key(canary: str) -> None:
    system_config_set(key="REVEALED", value=canary, is_sensitive=True)
    client = key_client(reveal=True, name="auditor")
    response = client.get(f"{SYSTEM}REVEALED/", {"reveal": "true"})
    assert response.status_code == 200 and response.json()["value"] == canary
    event = AuditEvent.objects.get(action="reveal")
    assert event.actor.startswith("api-key:auditor (") and event.natural_key == "REVEALED"
    assert event.value_hashes == {} and event.changed_fields == []
    assert_nowhere(the_trail(), [canary])


def test_api_keys_created_changed_and_revoked_are_audited(cli: Callable[..., CliResult]) -> None:
    created = cli("apikey", "create", "billing", "--write", "--json")
    key = json.loads(created.out)["key"]
    revoked = cli("apikey", "revoke", "billing")
    assert revoked.code == 0
    events = list(AuditEvent.objects.filter(action__endswith="_key").order_by("id"))
    assert [(e.action, e.via, e.actor) for e in events] == [
        ("create_key", "cli", cli_actor()),
        ("revoke_key", "cli", cli_actor()),
    ]
    assert events[0].details["name"] == "billing" and "write" in events[0].details["scopes"]
    assert_nowhere(the_trail(), [key])


def test_a_restore_is_audited_via_restore(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    saved, later = canary_for("restore"), canary_for("restore-later")
    system_config_set(key="RESTORED_TOKEN", value=saved, is_sensitive=True)
    system_config_set(key="RESTORED_PLAIN", value="before")
    path = tmp_path / "backup.json"
    assert cli("snapshot", "--output", str(path)).code == 0
    system_config_set(key="RESTORED_TOKEN", value=later, is_sensitive=True)
    system_config_set(key="RESTORED_PLAIN", value="after")

    result = cli("restore", str(path))

    assert result.code == 0, result.err
    event = last_change("RESTORED_TOKEN")
    assert (event.actor, event.via, event.action) == (cli_actor(), "restore", "update")
    assert event.changed_fields == ["secret_value"]
    assert_hash_answers(event, "secret_value", saved)
    plain = last_change("RESTORED_PLAIN")
    assert (plain.via, plain.changed_fields, plain.value_hashes) == ("restore", ["value"], {})
    whole = AuditEvent.objects.get(action="restore")
    assert (whole.actor, whole.via, whole.details["changed"]) == (cli_actor(), "restore", 2)
    assert_nowhere(the_trail() | {"output": result.out + result.err}, [saved, later])


def test_a_rollback_is_audited_via_rollback(cli: Callable[..., CliResult]) -> None:
    first, second = canary_for("rollback-1"), canary_for("rollback-2")
    system_config_set(key="ROLLED_TOKEN", value=first, is_sensitive=True)
    system_config_set(key="ROLLED_TOKEN", value=second, is_sensitive=True)

    result = cli("rollback", "ROLLED_TOKEN", "1")

    assert result.code == 0, result.err
    assert SystemConfig.objects.get(key="ROLLED_TOKEN").raw_value() == first
    events = events_of("ROLLED_TOKEN", via="rollback")
    assert len(events) == 1
    event = events[0]
    assert (event.actor, event.action) == (cli_actor(), "update")
    assert event.details == {"rolled_back_to": 1, "version": 3}
    assert event.changed_fields == ["secret_value"]
    assert_hash_answers(event, "secret_value", first)
    assert_nowhere(the_trail() | {"output": result.out + result.err}, [first, second])


def test_a_key_rotation_is_audited(cli: Callable[..., CliResult], settings: Any) -> None:
    secret = canary_for("rotate")
    old, new = generate_key(), generate_key()
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [old]
    reset_keyring()
    try:
        system_config_set(key="ROTATED_TOKEN", value=secret, is_sensitive=True)
        changes = AuditEvent.objects.count()
        settings.CONFIGSYNC_ENCRYPTION_KEYS = [new, old]
        reset_keyring()

        result = cli("keys", "rotate")

        assert result.code == 0, result.err
        events = list(AuditEvent.objects.order_by("id"))[changes:]
        assert [(e.action, e.actor, e.via) for e in events] == [("rotate_keys", cli_actor(), "cli")]
        details = events[0].details
        assert details["primary_key_id"] == parse_key(new).kid
        assert (details["rotated"], details["unreadable"], details["complete"]) == (2, 0, True)
        assert events[0].model_label == "" and events[0].value_hashes == {}
        # Not a change: the setting keeps its value and gets no new version or change event.
        assert SystemConfig.objects.get(key="ROTATED_TOKEN").raw_value() == secret
        assert RecordVersion.objects.filter(natural_key="ROTATED_TOKEN").count() == 1
        assert_nowhere(the_trail() | {"output": result.out + result.err}, [secret])
    finally:
        reset_keyring()


# -- the whole trail --------------------------------------------------------------------------


@pytest.fixture
def every_kind(
    replication: None, admin_client: Client, cli: Callable[..., CliResult], tmp_path: Path
) -> Iterator[list[str]]:
    """One change of each kind above, each with its own canary; yields the canaries."""
    secrets = {kind: canary_for(kind) for kind in ("admin", "api", "cli", "peer", "env", "import")}
    record = system_config_set(key="K_ADMIN", value="plain-start", is_sensitive=True)
    admin = admin_client.post(
        reverse("admin:configsync_systemconfig_change", args=[record.pk]),
        setting_form(record, value=secrets["admin"]),
    )
    assert admin.status_code == 302
    api = key_client(write=True).post(
        SYSTEM, {"key": "K_API", "value": secrets["api"], "is_sensitive": True}, format="json"
    )
    assert api.status_code == 201
    assert cli("set", "K_CLI", "-", "--sensitive", stdin=secrets["cli"]).code == 0
    token = get_keyring().encrypt(
        secrets["peer"],
        context=encryption_context_for(
            model_label=SETTING_LABEL, field_name="secret_value", natural_key="K_PEER"
        ),
    )
    applied = changes_apply(
        changes=[
            remote_change(
                "K_PEER", data=config_data("K_PEER", "", secret_value=token, is_sensitive=True)
            )
        ],
        source_node=REMOTE,
        source_name="node-b",
    )
    assert [r.status for r in applied] == ["applied"]
    env = tmp_path / "app.env"
    env.write_text(f"K_ENV_TOKEN={secrets['env']}\n")
    env.chmod(0o600)
    env_import(path=str(env))
    imported = tmp_path / "in.json"
    imported.write_text(
        json.dumps([{"key": "K_IMPORT", "value": secrets["import"], "is_sensitive": True}])
    )
    assert cli("import", str(imported)).code == 0
    reader = key_client(reveal=True, name="reader")
    for key in ("K_API", "K_CLI"):
        assert reader.get(f"{SYSTEM}{key}/", {"reveal": "true"}).status_code == 200
    for key in ("K_ADMIN", "K_API", "K_CLI", "K_PEER", "K_ENV_TOKEN", "K_IMPORT"):
        assert SystemConfig.objects.get(key=key).is_sensitive, key
    deployment_mode_set(mode="LOCAL_ONLY", actor="user:ops")
    yield list(secrets.values())


def test_the_trail_has_every_kind_and_no_plaintext(every_kind: list[str]) -> None:
    vias = set(AuditEvent.objects.values_list("via", flat=True))
    assert {"admin", "api", "cli", "peer", "envbridge", "import", "system"} <= vias
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"create", "update", "reveal", "mode_switch", "create_key"} <= actions
    assert AuditEvent.objects.filter(action="reveal").count() == 2
    hashed = AuditEvent.objects.exclude(value_hashes={}).count()
    assert hashed >= 6
    assert_nowhere(the_trail(), every_kind)
    for event in AuditEvent.objects.exclude(value_hashes={}):
        for value in event.value_hashes.values():
            assert value.startswith("hmac1:")


def test_every_change_names_its_node_and_changed_fields(every_kind: list[str]) -> None:
    changes = AuditEvent.objects.filter(action__in=["create", "update", "delete"])
    assert changes.exists()
    node = node_id()
    for event in changes:
        assert event.node_id == node and event.hlc and event.origin_node
        assert event.changed_fields, event
        assert event.details.get("version", 0) >= 1


# -- nothing writes a replicated record behind the hook -----------------------------------------

REPLICATED_MODELS = {"SystemConfig", "AIProviderConfig", "User", "Group", "Project", "Template"}
ALLOWED = {Path("configsync/crypto/rotation.py")}  # re-encrypts tokens in place: same values
BYPASSES = {"update", "bulk_create", "bulk_update", "raw", "_raw_delete"}


def _bypasses(source: str) -> list[str]:
    """``Model.objects….update()`` (and bulk writes) on a replicated model, which no
    ``post_save`` sees, so neither the feed nor the trail would record them."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in BYPASSES:
            continue
        chain = ast.unparse(node.func.value)
        if any(chain.startswith(f"{model}.") for model in REPLICATED_MODELS):
            found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_code_writes_a_replicated_model_without_the_replication_hook() -> None:
    root = Path(__file__).resolve().parents[2]
    offenders = {}
    for package in ("configsync", "providers"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if "migrations" in relative.parts or relative in ALLOWED:
                continue
            hits = _bypasses(path.read_text())
            if hits:
                offenders[str(relative)] = hits
    assert offenders == {}
    assert _bypasses("SystemConfig.objects.filter(key='k').update(value='v')")  # it would see one


def test_the_leak_check_sees_each_encoded_form() -> None:
    secret = canary_for("probe")
    for prefix in (b"", b"x", b"xy"):
        wrapped = prefix + secret.encode() + b"tail"
        texts = {
            "b64": base64.b64encode(wrapped).decode(),
            "b64url": base64.urlsafe_b64encode(wrapped).decode(),
        }
        for where, text in texts.items():
            with pytest.raises(AssertionError):
                assert_nowhere({where: text}, [secret])
    with pytest.raises(AssertionError):
        assert_nowhere({"query": "?v=" + urllib.parse.quote(secret, safe="")}, [secret])
