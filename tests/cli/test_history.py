"""``configsync history KEY [--model] [--json]`` and ``configsync rollback KEY VERSION``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from configsync.models import AuditEvent, RecordVersion, SystemConfig
from configsync.services.system_config import system_config_set
from providers.models import AIProviderConfig
from providers.services import ai_provider_set
from tests.support.cli import CliResult

pytestmark = pytest.mark.django_db

Cli = Callable[..., CliResult]


def test_history_prints_versions_newest_first_with_the_diff(cli: Cli) -> None:
    system_config_set(key="SITE", value="one")
    system_config_set(key="SITE", value="two")
    result = cli("history", "SITE")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "2 kept version(s)" in lines[0]
    assert lines[1].startswith("v2 (current)")
    assert '    value: "one" -> "two"' in lines


def test_history_json_matches_the_api_document(cli: Cli, canary: str) -> None:
    system_config_set(key="TOKEN", value=canary, is_sensitive=True)
    system_config_set(key="TOKEN", value=canary + "-2", is_sensitive=True)
    result = cli("history", "TOKEN", "--json")
    assert result.code == 0, result.err
    assert canary not in result.out
    document = json.loads(result.out)
    assert document["model"] == "configsync.systemconfig" and document["key"] == "TOKEN"
    newest = document["versions"][0]
    assert newest["values"]["secret_value"] == "********"
    assert {c["field"]: c["status"] for c in newest["changes"]} == {"secret_value": "changed"}
    from configsync.replication.api.history import RecordVersionSerializer

    assert set(newest) == set(RecordVersionSerializer().fields)


def test_history_of_a_provider_by_model_label(cli: Cli, canary: str) -> None:
    ai_provider_set(name="main", kind="openai", api_key=canary, default_model="gpt-4o-mini")
    result = cli("history", "main", "--model", "providers.AIProviderConfig", "--json")
    assert result.code == 0, result.err
    assert canary not in result.out
    assert json.loads(result.out)["versions"][0]["values"]["api_key"] == "********"


def test_rollback_writes_the_version_again(cli: Cli) -> None:
    system_config_set(key="LEVEL", value="good")
    system_config_set(key="LEVEL", value="bad")
    result = cli("rollback", "LEVEL", "1", "--json")
    assert result.code == 0, result.err
    document: dict[str, Any] = json.loads(result.out)
    assert document["rolled_back_to"] == 1 and document["version"] == 3
    assert SystemConfig.objects.get(key="LEVEL").value == "good"
    event = AuditEvent.objects.filter(natural_key="LEVEL").order_by("-id").first()
    assert event is not None and event.via == "rollback" and event.actor.startswith("cli:")
    plain = cli("rollback", "LEVEL", "2")
    assert plain.code == 0 and "rolled back to version 2: now version 4" in plain.out


def test_rollback_of_a_provider(cli: Cli) -> None:
    ai_provider_set(name="main", kind="openai", api_key="sk-CANARY-x", default_model="gpt-4o-mini")
    ai_provider_set(name="main", default_model="gpt-4o")
    result = cli("rollback", "main", "1", "--model", "providers.aiproviderconfig")
    assert result.code == 0, result.err
    assert AIProviderConfig.objects.get(name="main").default_model == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("rollback", "LEVEL", "7"), "has no kept version 7"),
        (("rollback", "NOPE", "1"), "has no kept version 1"),
        (("rollback", "LEVEL", "1", "--model", "auth.permission"), "not a replicated model"),
        (("history", "LEVEL", "--model", "nothing.here"), "not a replicated model"),
    ],
    ids=["missing-version", "missing-record", "rollback-unknown-model", "history-unknown-model"],
)
def test_bad_input_is_one_line_exit_1_and_writes_nothing(
    cli: Cli, args: tuple[str, ...], reason: str
) -> None:
    system_config_set(key="LEVEL", value="a")
    before = (RecordVersion.objects.count(), AuditEvent.objects.count())
    result = cli(*args)
    assert result.code == 1
    assert reason in result.err and result.err.count("\n") == 1
    assert (RecordVersion.objects.count(), AuditEvent.objects.count()) == before


def test_rollback_that_would_show_a_secret_needs_the_cli_reveal_right(
    cli: Cli, canary: str, settings: Any
) -> None:
    system_config_set(key="WAS_PLAIN", value=canary)
    system_config_set(key="WAS_PLAIN", value=canary + "-2", is_sensitive=True, allow_reveal=True)
    settings.CONFIGSYNC_CLI_REVEAL = False
    result = cli("rollback", "WAS_PLAIN", "1")
    assert result.code == 1 and "reveal right" in result.err and canary not in result.err
    assert SystemConfig.objects.get(key="WAS_PLAIN").is_sensitive
