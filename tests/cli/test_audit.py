"""``configsync audit``: the table, ``--json``, ``--jsonl`` (the export), filters, bad input,
and ``--value-of`` (yes / no / unknown, the candidate read from stdin or a prompt, never argv)."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from configsync.crypto.keyring import generate_key, reset_keyring
from configsync.models import AuditEvent
from configsync.selectors.audit import AUDIT_EXPORT_FIELDS
from configsync.services.audit import audit_action
from configsync.services.system_config import system_config_set
from tests.support.cli import CliResult

pytestmark = pytest.mark.django_db

Cli = Callable[..., CliResult]


@pytest.fixture
def trail(canary: str) -> dict[str, AuditEvent]:
    system_config_set(key="PLAIN", value="hello")
    system_config_set(key="TOKEN", value=canary, is_sensitive=True)
    audit_action(action="mode_switch", details={"from": "settings", "to": "LOCAL_ONLY"})
    return {
        "plain": AuditEvent.objects.get(natural_key="PLAIN"),
        "token": AuditEvent.objects.get(natural_key="TOKEN"),
        "mode": AuditEvent.objects.get(action="mode_switch"),
    }


def test_the_table_for_people_names_who_what_where_when(cli: Cli, trail: Any, canary: str) -> None:
    result = cli("audit")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["when", "(UTC)", "id"]
    assert len(lines) == 4
    assert "configsync.systemconfig:TOKEN" in lines[2] and "secret_value" in lines[2]
    assert "mode_switch" in result.out and "to=LOCAL_ONLY" in result.out
    assert (
        canary not in result.out and trail["token"].value_hashes["secret_value"] not in result.out
    )


def test_json_is_a_list_newest_first_and_jsonl_the_export_oldest_first(
    cli: Cli, trail: Any, canary: str
) -> None:
    listed = json.loads(cli("audit", "--json").out)
    assert [row["id"] for row in listed] == [
        trail["mode"].pk,
        trail["token"].pk,
        trail["plain"].pk,
    ]
    assert all(tuple(row) == AUDIT_EXPORT_FIELDS for row in listed)
    exported = cli("audit", "--jsonl").out.splitlines()
    rows = [json.loads(line) for line in exported]
    assert rows == list(reversed(listed))
    token = next(row for row in rows if row["key"] == "TOKEN")
    assert token["via"] == "system" and token["action"] == "create"
    assert token["value_hashes"]["secret_value"].startswith("hmac1:")
    assert token["at"].endswith("+00:00")
    assert canary not in "\n".join(exported)


def test_filters_and_limit(cli: Cli, trail: Any) -> None:
    def keys(*args: str) -> list[str]:
        return [
            row["key"] or row["action"] for row in json.loads(cli("audit", "--json", *args).out)
        ]

    assert keys("--key", "TOKEN") == ["TOKEN"]
    assert keys("--action", "mode_switch") == ["mode_switch"]
    assert keys("--model", "configsync.SystemConfig") == ["TOKEN", "PLAIN"]
    assert keys("--actor", "SYST", "--via", "system") == ["mode_switch", "TOKEN", "PLAIN"]
    assert keys("--actor", "user:") == []
    assert keys("--limit", "1") == ["mode_switch"]
    assert keys("--since", "1h") == ["mode_switch", "TOKEN", "PLAIN"]
    assert keys("--since", "2999-01-01") == []
    AuditEvent.objects.filter(pk=trail["plain"].pk).update(created_at="2020-01-01T00:00:00Z")
    assert keys("--since", "2d") == ["mode_switch", "TOKEN"]
    jsonl = cli("audit", "--jsonl", "--limit", "2").out.splitlines()
    assert [json.loads(line)["id"] for line in jsonl] == [trail["token"].pk, trail["mode"].pk]


@pytest.mark.parametrize(
    "args",
    [
        ("--since", "yesterday"),
        ("--since", "5y"),
        ("--since", "2026-13-45"),
        ("--field", "secret_value"),
        ("--value-of", "999999"),
        ("--value-of", "1", "--since", "1h"),
    ],
    ids=["words", "unit", "bad-date", "field-alone", "no-event", "value-of-with-filter"],
)
def test_bad_input_is_one_line_and_exit_1(cli: Cli, trail: Any, args: tuple[str, ...]) -> None:
    result = cli("audit", *args, stdin="x\n")
    assert result.code == 1, result
    assert result.out == ""
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [("--action", "explode"), ("--limit", "0"), ("--json", "--jsonl"), ("--via", "mail")],
    ids=["action", "limit", "two-outputs", "via"],
)
def test_the_parser_refuses_bad_options(cli: Cli, args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError) as caught:
        cli("audit", *args)
    assert len(str(caught.value).splitlines()) == 1


def test_value_of_answers_yes_and_no_from_stdin(cli: Cli, trail: Any, canary: str) -> None:
    event = str(trail["token"].pk)
    yes = cli("audit", "--value-of", event, stdin=canary + "\n")
    assert yes.code == 0 and yes.last_line == "yes"
    no = cli("audit", "--value-of", event, "--field", "secret_value", stdin="sk-CANARY-wrong\n")
    assert no.last_line == "no"
    body = json.loads(cli("audit", "--value-of", event, "--json", stdin=canary).out)
    assert body == {
        "event": trail["token"].pk,
        "field": "secret_value",
        "answer": "yes",
        "match": True,
    }
    for result in (yes, no):
        assert canary not in result.out + result.err
    checks = AuditEvent.objects.filter(action="check_value").order_by("id")
    assert [c.details["answer"] for c in checks] == ["yes", "no", "yes"]
    assert all(c.via == "cli" and c.details["event"] == trail["token"].pk for c in checks)
    assert canary not in json.dumps([c.details for c in checks])


def test_value_of_needs_the_command_lines_reveal_right(
    cli: Cli, trail: Any, canary: str, settings: Any
) -> None:
    settings.CONFIGSYNC_CLI_REVEAL = False
    result = cli("audit", "--value-of", str(trail["token"].pk), stdin=canary)
    assert result.code == 1 and "CONFIGSYNC_CLI_REVEAL" in result.err and result.out == ""
    assert not AuditEvent.objects.filter(action="check_value").exists()


def test_value_of_reads_a_prompt_without_echo_on_a_terminal(
    cli: Cli, trail: Any, canary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def getpass(prompt: str) -> str:
        asked.append(prompt)
        return canary

    monkeypatch.setattr(sys, "stdin", Terminal(""))
    monkeypatch.setattr("getpass.getpass", getpass)
    result = cli("audit", "--value-of", str(trail["token"].pk))
    assert result.last_line == "yes" and asked == ["value to compare (not shown): "]
    assert canary not in result.out + result.err


def test_value_of_says_unknown_without_the_key(cli: Cli, trail: Any, canary: str) -> None:
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[generate_key()]):
        reset_keyring()
        result = cli("audit", "--value-of", str(trail["token"].pk), stdin=canary)
    assert result.code == 0 and result.last_line == "unknown"
    assert "lacks the key" in result.err


def test_value_of_an_event_without_hashes_or_an_unknown_field(cli: Cli, trail: Any) -> None:
    plain = cli("audit", "--value-of", str(trail["plain"].pk), stdin="hello")
    assert plain.code == 1 and "no sensitive value" in plain.err
    field = cli("audit", "--value-of", str(trail["token"].pk), "--field", "value", stdin="x")
    assert field.code == 1 and "secret_value" in field.err


def test_the_value_is_never_an_argument() -> None:
    from configsync.management.commands.configsync import Command

    parser = Command().create_parser("manage.py", "configsync")
    audit = next(
        action.choices["audit"]
        for action in parser._actions
        if getattr(action, "choices", None) and "audit" in action.choices
    )
    positionals = [a for a in audit._actions if not a.option_strings]
    assert positionals == []
    assert audit._option_string_actions["--value-of"].type is int
