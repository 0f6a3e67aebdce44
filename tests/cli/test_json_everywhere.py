"""``--json`` on every ``configsync`` subcommand that prints something, with the API's names.

One test per subcommand that gained ``--json`` (it parses the document and checks its fields,
and that no secret other than the one the command exists to print is in it), and one that walks
the parser: every leaf subcommand has ``--json`` unless it is in :data:`WITHOUT_JSON`.
"""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from configsync.crypto.keyring import generate_key, parse_key, reset_keyring
from configsync.management.commands.configsync import Command
from configsync.models import Conflict, QuarantinedChange, ServiceAPIKey
from configsync.replication.api.ops import ConflictSerializer
from configsync.replication.api.quarantine import QuarantinedChangeSerializer
from configsync.replication.hlc import physical_now_ms
from configsync.replication.services.apply import changes_apply
from configsync.services.api_keys import api_key_create
from configsync.services.system_config import system_config_set
from tests.support.cli import CliResult
from tests.support.kit_database import (
    DatabaseKit,
    database_kit,  # noqa: F401 - fixture
)
from tests.support.replication import (
    REMOTE,
    config_data,
    remote_change,
    stamp,
    use_replication_settings,
)

pytestmark = pytest.mark.django_db

# Leaf subcommands without ``--json``, each for a reason; keep this list short.
WITHOUT_JSON = {
    # Prints shell code to be sourced, not data.
    "completion",
    # Has --format env|json|yaml: `export --format json` is its JSON (a flag would be a synonym).
    "export",
    # Runs a program; what it prints is the program's own output.
    "run",
}

# The fields `apikey list --json` prints for each key.
API_KEY_FIELDS = {"name", "prefix", "scopes", "state", "revoked", "expires", "created"}


def document(result: CliResult) -> Any:
    """The one JSON document on stdout of a successful run."""
    assert result.code == 0, result.err
    return json.loads(result.out)


def leaf_subcommands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every runnable subcommand: a parser without actions, or whose action is optional."""

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[str, Any]]:
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if path and (not nested or not nested[0].required):
            yield " ".join(path), parser
        for action in nested:
            for name, child in action.choices.items():
                yield from walk(child, [*path, name])

    yield from walk(Command().create_parser("manage.py", "configsync"), [])


def test_every_leaf_subcommand_has_json_unless_allowed() -> None:
    leaves = dict(leaf_subcommands())
    assert {"apikey create", "quarantine retry", "keys generate", "sync"} <= set(leaves)
    missing = {
        path
        for path, parser in leaves.items()
        if "--json" not in parser._option_string_actions and path not in WITHOUT_JSON
    }
    assert missing == set(), f"subcommands without --json: {sorted(missing)}"
    stale = WITHOUT_JSON - set(leaves)
    assert stale == set(), f"allow-listed subcommands that no longer exist: {sorted(stale)}"


# -- apikey -----------------------------------------------------------------------------------


def test_apikey_create_json_has_the_list_fields_and_the_key_once(cli: Any) -> None:
    body = document(cli("apikey", "create", "billing", "--write", "--json"))
    assert set(body) == API_KEY_FIELDS | {"key"}
    record = ServiceAPIKey.objects.get(name="billing")
    assert body["prefix"] == record.prefix and body["key"].startswith(record.prefix)
    assert body["scopes"] == record.scopes and "write" in body["scopes"]
    assert body["state"] == "usable" and body["revoked"] is False and body["expires"] is None
    assert ServiceAPIKey.objects.get_from_key(body["key"]).pk == record.pk
    listed = document(cli("apikey", "list", "--json"))
    assert {k: v for k, v in body.items() if k != "key"} == listed[0]
    assert body["key"] not in json.dumps(listed)


def test_apikey_revoke_json_has_the_list_fields(cli: Any) -> None:
    record, key = api_key_create(name="old")
    first = document(cli("apikey", "revoke", "old", "--json"))
    assert set(first) == API_KEY_FIELDS | {"already_revoked"}
    assert first["prefix"] == record.prefix and first["state"] == "revoked"
    assert first["revoked"] is True and first["already_revoked"] is False
    again = document(cli("apikey", "revoke", record.prefix, "--json"))
    assert again["already_revoked"] is True
    assert key not in json.dumps([first, again])
    missing = cli("apikey", "revoke", "nobody", "--json")
    assert missing.code == 1 and missing.out == "" and len(missing.err.splitlines()) == 1


# -- keys -------------------------------------------------------------------------------------


def test_keys_generate_json_prints_the_key_and_its_id(cli: Any) -> None:
    body = document(cli("keys", "generate", "--json"))
    assert set(body) == {"key", "key_id"}
    assert parse_key(body["key"]).kid == body["key_id"]


def test_keys_rotate_json_has_the_report_fields(cli: Any, canary: str) -> None:
    old, new = generate_key(), generate_key()
    try:
        with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[old]):
            reset_keyring()
            system_config_set(key="S1", value=canary, is_sensitive=True)
        with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[new, old]):
            reset_keyring()
            result = cli("keys", "rotate", "--json")
            body = document(result)
    finally:
        reset_keyring()
    assert set(body) == {
        "primary_key_id",
        "scanned",
        "rotated",
        "already_current",
        "batches",
        "complete",
        "unreadable",
    }
    assert body["primary_key_id"] == parse_key(new).kid
    # The row's token and its copy kept in the history (RecordVersion) are both rotated.
    assert body["rotated"] == 2 and body["complete"] is True and body["unreadable"] == []
    assert canary not in result.out + result.err and old not in result.out


def test_keys_rotate_json_lists_unreadable_values_and_still_fails(cli: Any, canary: str) -> None:
    lost = generate_key()
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[lost]):
        reset_keyring()
        system_config_set(key="ORPHAN", value=canary, is_sensitive=True)
    reset_keyring()
    result = cli("keys", "rotate", "--json")
    assert result.code == 1 and len(result.err.splitlines()) == 1
    body = json.loads(result.out)
    # The row, and its copy kept in the history (RecordVersion).
    assert [item["record"] for item in body["unreadable"]] == [
        "ORPHAN",
        "ORPHAN, history version 1",
    ]
    assert set(body["unreadable"][0]) == {"model", "field", "record", "reason"}
    assert canary not in result.out + result.err


# -- mode, external ---------------------------------------------------------------------------


def test_mode_set_json_is_the_strategies_document(cli: Any, settings: Any) -> None:
    use_replication_settings(settings)
    body = document(cli("mode", "set", "LOCAL_EXTERNAL", "--json"))
    assert set(body) == {"mode", "source", "transports", "peers", "problems", "strategies"}
    assert body["mode"] == "LOCAL_EXTERNAL" and body["source"] == "stored"
    assert body == document(cli("mode", "show", "--json"))
    refused = cli("mode", "set", "CLOUD", "--json")
    assert refused.code == 1 and refused.out == "" and "current mode is kept" in refused.err


def test_external_init_json_names_the_database_and_the_tables_created(
    database_kit: DatabaseKit,  # noqa: F811 - the fixture
    cli: Any,
) -> None:
    first = document(cli("external", "init", "--json"))
    assert set(first) == {"database", "medium", "group", "created"}
    assert first["created"] and all(name.startswith("configsync_ext") for name in first["created"])
    status = document(cli("external", "status", "--json"))
    assert {k: status[k] for k in ("database", "medium", "group")} == {
        k: first[k] for k in ("database", "medium", "group")
    }
    assert set(first["created"]) == set(status["tables_present"])
    assert document(cli("external", "init", "--json"))["created"] == []
    assert "postgres://" not in json.dumps(first) and "@" not in first["database"]


# -- quarantine -------------------------------------------------------------------------------


def quarantined(settings: Any) -> QuarantinedChange:
    """One quarantined change: an int value that does not parse."""
    use_replication_settings(settings)
    bad = remote_change("BAD", data=config_data("BAD", value="sk-CANARY-q", value_type="int"))
    changes_apply(changes=[bad], source_node=REMOTE, source_name="peer-b")
    return QuarantinedChange.objects.get(natural_key="BAD")


def test_quarantine_drop_json_has_the_api_fields(cli: Any, settings: Any) -> None:
    row = quarantined(settings)
    body = document(cli("quarantine", "drop", str(row.pk), "--json"))
    assert set(body) == set(QuarantinedChangeSerializer.Meta.fields)  # the API's names
    assert body["id"] == row.pk and body["key"] == "BAD" and body["status"] == "dropped"
    assert "sk-CANARY-q" not in json.dumps(body)
    # before the action too, as the listing takes it
    assert document(cli("quarantine", "--json", "drop", str(row.pk)))["id"] == row.pk
    missing = cli("quarantine", "drop", "999999", "--json")
    assert missing.code == 1 and missing.out == "" and "no quarantined change" in missing.err


def test_quarantine_retry_json_is_the_outcome(cli: Any, settings: Any) -> None:
    use_replication_settings(settings)
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 300
    future = remote_change("F", "v", hlc=stamp(REMOTE, wall=physical_now_ms() + 400_000))
    changes_apply(changes=[future], source_node=REMOTE, source_name="peer-b")
    row = QuarantinedChange.objects.get(natural_key="F")
    still = cli("quarantine", "retry", str(row.pk), "--json")
    assert still.code == 1 and still.out == "" and "still cannot be stored" in still.err
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 3600
    body = document(cli("quarantine", "retry", str(row.pk), "--json"))
    assert body == {"id": row.pk, "status": "applied", "reason": ""}


# -- sync, resolve ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sync_json_has_one_result_per_peer_and_still_fails(cli: Any, settings: Any) -> None:
    use_replication_settings(settings)
    settings.CONFIGSYNC_PEERS = [f"down=http://127.0.0.1:{_closed_port()}"]
    settings.CONFIGSYNC_PEER_TIMEOUT_SECONDS = 2
    result = cli("sync", "--json")
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1
    assert "sync failed with down" in result.err
    body = json.loads(result.out)
    assert set(body) == {"warnings", "results"} and isinstance(body["warnings"], list)
    (peer,) = body["results"]
    assert peer["peer"] == "down" and peer["ok"] is False and "unreachable" in peer["error"]
    assert {"peer_id", "pulled", "pushed", "conflicts", "stale", "quarantined", "run_id"} <= set(
        peer
    )
    none = cli("sync", "--peer", "nope", "--json")
    assert none.code == 1 and none.out == "" and "no peer named 'nope'" in none.err


def test_resolve_json_has_the_api_conflict_fields(cli: Any, settings: Any, canary: str) -> None:
    use_replication_settings(settings)
    system_config_set(key="K", value=canary, is_sensitive=True)
    later = stamp(REMOTE, wall=physical_now_ms() + 1000)
    changes_apply(
        changes=[remote_change("K", "remote", hlc=later)], source_node=REMOTE, source_name="peer"
    )
    conflict = Conflict.objects.get()
    result = cli("resolve", str(conflict.pk), "local", "--json")
    body = document(result)
    assert set(body) == set(ConflictSerializer.Meta.fields)  # the API's names
    assert body["id"] == conflict.pk and body["status"] == "resolved"
    assert body["resolution"] == "local" and body["resolved_at"] is not None
    assert set(body["local"]) == {"hlc", "origin", "deleted"}
    assert canary not in result.out and "enc1:" not in result.out
    again = cli("resolve", str(conflict.pk), "local", "--json")
    assert again.code == 1 and again.out == "" and "already resolved" in again.err
