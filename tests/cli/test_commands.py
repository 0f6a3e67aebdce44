"""``manage.py configsync`` set/get/list/delete, provider and keys: output and exit codes.

``cli`` (tests/conftest.py) runs the command in-process and returns its exit code and output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from configsync.crypto.keyring import generate_key, parse_key, reset_keyring
from configsync.models import AuditEvent, SystemConfig
from configsync.services.system_config import system_config_set
from providers.models import AIProviderConfig

pytestmark = pytest.mark.django_db


def test_set_get_list_delete_round_trip(cli: Any) -> None:
    result = cli("set", "PORT", "8080", "--type", "int", "--category", "web")
    assert result.code == 0 and "PORT" in result.out
    assert cli("get", "PORT").last_line == "8080"
    listing = json.loads(cli("list", "--json").out)
    assert listing[0]["key"] == "PORT" and listing[0]["value"] == 8080
    assert listing[0]["category"] == "web"
    assert cli("delete", "PORT").code == 0
    assert not SystemConfig.objects.exists()


def test_sensitive_value_is_masked_unless_revealed(cli: Any, canary: str) -> None:
    assert cli("set", "API_TOKEN", canary, "--sensitive").code == 0
    masked = cli("get", "API_TOKEN")
    assert masked.code == 0 and canary not in masked.out and masked.last_line == "********"
    assert not AuditEvent.objects.filter(action="reveal").exists()
    revealed = cli("get", "API_TOKEN", "--reveal")
    assert revealed.last_line == canary
    event = AuditEvent.objects.filter(action="reveal").get()
    assert (event.action, event.natural_key) == (AuditEvent.Action.REVEAL, "API_TOKEN")
    assert event.actor.startswith("cli")
    for output in (
        cli("list").out,
        cli("list", "--json").out,
        cli("get", "API_TOKEN", "--json").out,
    ):
        assert canary not in output
    assert json.loads(cli("get", "API_TOKEN", "--json", "--reveal").out)["value"] == canary


def test_value_can_come_from_standard_input(cli: Any, canary: str) -> None:
    result = cli("set", "DB_PASSWORD", "-", "--sensitive", stdin=canary + "\n")
    assert result.code == 0 and canary not in result.out
    assert SystemConfig.objects.get(key="DB_PASSWORD").typed_value() == canary
    result = cli(
        "provider", "set", "openai-main", "--kind", "openai", "--api-key", "-", stdin=canary
    )
    assert result.code == 0
    assert AIProviderConfig.objects.get(name="openai-main").api_key == canary


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("get", "MISSING"), "no system setting named 'MISSING'"),
        (("delete", "MISSING"), "no system setting named 'MISSING'"),
        (("set", "PORT", "eighty", "--type", "int"), "value: Enter a whole number."),
        (("set", "URL", "not a url", "--type", "url"), "value: Enter a valid URL"),
        (("set", "J", "{", "--type", "json"), "value: Enter valid JSON."),
        (("set", "bad key", "x"), "key: Use letters"),
        (("provider", "set", "p", "--kind", "mistral", "--api-key", "sk-CANARY-1"), "kind:"),
        (("provider", "set", "p", "--kind", "sk-CANARY-misplaced"), "Unknown provider kind"),
        (("set", "X", "1", "--type", "sk-CANARY-misplaced"), "value_type: Unknown type"),
        (("provider", "set", "p", "--kind", "openai"), "api_key: Required for OpenAI."),
        (
            ("provider", "set", "p", "--kind", "azure_openai", "--api-key", "sk-CANARY-1"),
            "Required for Azure OpenAI.",
        ),
        (("provider", "set", "p", "--kind", "ollama", "--base-url", "nope"), "base_url:"),
    ],
)
def test_bad_input_exits_1_with_one_line_and_saves_nothing(
    cli: Any, args: tuple[str, ...], reason: str
) -> None:
    result = cli(*args)
    assert result.code == 1
    assert reason in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "sk-CANARY" not in result.err
    assert not SystemConfig.objects.exists() and not AIProviderConfig.objects.exists()


def test_unknown_type_exits_1_naming_the_types(cli: Any) -> None:
    result = cli("set", "X", "1", "--type", "yaml")
    assert result.code == 1
    assert "value_type: Unknown type; use one of str, int, float, bool, json, url." in result.err
    assert not SystemConfig.objects.exists()


def test_provider_set_and_list(cli: Any, canary: str) -> None:
    assert cli("provider", "set", "local", "--kind", "ollama", "--model", "llama3.2").code == 0
    result = cli(
        "provider", "set", "azure", "--kind", "azure_openai", "--api-key", canary,
        "--endpoint", "https://example.openai.azure.com", "--deployment", "gpt-4o", "--default",
    )  # fmt: skip
    assert result.code == 0, result.err
    table = cli("provider", "list")
    assert "azure" in table.out and "local" in table.out and canary not in table.out
    listed = {p["name"]: p for p in json.loads(cli("provider", "list", "--json").out)}
    assert listed["azure"]["api_key"] == "********" and listed["azure"]["is_default"]
    assert listed["azure"]["api_version"] == "2024-10-21"
    assert listed["local"]["api_key"] is None and listed["local"]["default_model"] == "llama3.2"
    assert cli("provider", "set", "local", "--disable").code == 0
    assert not AIProviderConfig.objects.get(name="local").enabled


def test_keys_generate_prints_one_usable_key(cli: Any) -> None:
    first, second = cli("keys", "generate"), cli("keys", "generate")
    assert first.code == 0 and first.out.count("\n") == 1
    assert parse_key(first.last_line).kid != parse_key(second.last_line).kid


def test_keys_rotate_reports_and_is_idempotent(cli: Any, canary: str) -> None:
    old, new = generate_key(), generate_key()
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[old]):
        reset_keyring()
        system_config_set(key="S1", value=canary, is_sensitive=True)
        system_config_set(key="S2", value="sk-CANARY-2", is_sensitive=True)
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[new, old]):
        reset_keyring()
        result = cli("keys", "rotate", "--batch-size", "1")
        assert result.code == 0, result.err
        # Two rows and the copy of each kept in the history (RecordVersion).
        assert "rotated 4 value(s)" in result.out
        assert "rotated 0 value(s)" in cli("keys", "rotate").out
        status = json.loads(cli("keys", "status", "--json").out)
        assert status["tokens_by_key_id"] == {parse_key(new).kid: 4}
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[new]):
        reset_keyring()
        assert cli("get", "S1", "--reveal").last_line == canary


def test_keys_rotate_exits_1_naming_unreadable_records(cli: Any, canary: str) -> None:
    lost = generate_key()
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[lost]):
        reset_keyring()
        system_config_set(key="ORPHAN", value=canary, is_sensitive=True)
    reset_keyring()
    system_config_set(key="FINE", value="sk-CANARY-fine", is_sensitive=True)
    result = cli("keys", "rotate")
    assert result.code == 1
    assert "ORPHAN" in result.err and "unknown key id" in result.err
    assert canary not in result.err + result.out


def test_get_of_an_undecryptable_value_exits_1_naming_record(cli: Any, canary: str) -> None:
    system_config_set(key="BROKEN", value=canary, is_sensitive=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE configsync_systemconfig SET secret_value = %s WHERE key = %s",
            ["enc1:000000000000:AAAA", "BROKEN"],
        )
    result = cli("get", "BROKEN", "--reveal")
    assert result.code == 1
    assert "BROKEN" in result.err and "secret_value" in result.err
    assert "enc1:" not in result.err and "Traceback" not in result.err
    assert cli("get", "BROKEN").last_line == "********"  # masking needs no decryption


def test_list_prints_aligned_columns_with_secrets_masked(cli: Any, canary: str) -> None:
    assert cli("list").last_line == "no settings"
    cli("set", "A_RATHER_LONG_NAME", "1", "--type", "int")
    cli("set", "B", canary, "--sensitive")
    lines = cli("list").out.splitlines()
    assert lines[0].split() == ["KEY", "TYPE", "CATEGORY", "SENSITIVE", "VALUE"]
    column = lines[0].index("VALUE")
    assert [line[column:] for line in lines[1:]] == ["1", "********"]
    assert canary not in "\n".join(lines)


@pytest.mark.parametrize(
    "args",
    [
        ("get", "K\udcff"),
        ("delete", "K\udcff"),
        ("list", "--category", "c\udcff"),
        ("provider", "delete", "p\udcff"),
        ("apikey", "create", "\udcff"),
        ("apikey", "revoke", "\udcff"),
    ],
    ids=["get", "delete", "list", "provider-delete", "apikey-create", "apikey-revoke"],
)
def test_an_argument_that_is_not_utf8_exits_1_with_one_line(
    cli: Any, args: tuple[str, ...]
) -> None:
    """A non-UTF-8 byte in argv arrives as a lone surrogate (surrogateescape), which no query can
    carry: it was a ``UnicodeEncodeError`` traceback from every read and delete."""
    result = cli(*args)
    assert result.code == 1
    assert "lone surrogate" in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
