"""``configsync snapshot`` and ``restore``: the document, the dry run, the one-transaction apply,
and every refusal (nothing written, one line, no value)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from configsync.crypto.keyring import generate_key
from configsync.models import AuditEvent, RecordVersion, ReplicatedRecord, SystemConfig
from configsync.services.system_config import system_config_delete, system_config_set
from configsync.snapshots import document as snapshot_document_module
from configsync.snapshots.document import (
    FORMAT,
    SnapshotError,
    document_dumps,
    document_loads,
    document_seal,
)
from configsync.snapshots.selectors import snapshot_document
from configsync.snapshots.services import snapshot_load, snapshot_restore
from providers.models import AIProviderConfig
from providers.services import ai_provider_set
from tests.support.cli import CliResult

pytestmark = pytest.mark.django_db

Cli = Callable[..., CliResult]


def state() -> list[tuple[str, str, int, bool]]:
    """Every replication row (model, key, seq, deleted): what a refused restore must not move."""
    return list(
        ReplicatedRecord.objects.order_by("model_label", "natural_key").values_list(
            "model_label", "natural_key", "seq", "deleted"
        )
    )


def save(path: Path, document: dict[str, Any]) -> str:
    path.write_bytes(document_dumps(document))
    return str(path)


@pytest.fixture
def production(canary: str) -> None:
    system_config_set(key="DB_PASSWORD", value=canary, is_sensitive=True)
    system_config_set(key="SITE_NAME", value="production")
    system_config_set(key="WORKERS", value="4", value_type="int")
    system_config_set(key="OLD_FLAG", value="x")
    system_config_delete(key="OLD_FLAG")


def test_snapshot_file_is_private_checksummed_and_keeps_secrets_as_ciphertext(
    cli: Cli, tmp_path: Path, canary: str, production: None
) -> None:
    path = tmp_path / "backup.json"
    result = cli("snapshot", "--output", str(path), "--json")

    assert result.code == 0, result.err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_text()
    assert canary not in raw
    document = document_loads(path.read_bytes())  # checksum verified
    assert document["format"] == FORMAT
    assert document["group_id"] == "default"
    assert json.loads(result.out)["checksum"] == document["checksum"]
    records = {(r["model"], r["key"]): r for r in document["records"]}
    secret = records[("configsync.systemconfig", "DB_PASSWORD")]["data"]["secret_value"]
    assert secret.startswith("enc1:")
    assert secret.split(":")[1] in document["key_ids"]
    # The tombstone is in it (see the package docstring).
    assert records[("configsync.systemconfig", "OLD_FLAG")]["deleted"] is True
    assert records[("configsync.systemconfig", "OLD_FLAG")]["data"] is None


def test_snapshot_to_stdout_is_the_same_document(cli: Cli, canary: str, production: None) -> None:
    result = cli("snapshot")

    assert result.code == 0, result.err
    assert canary not in result.out
    document = document_loads(result.out.encode())
    assert {r["key"] for r in document["records"]} >= {"DB_PASSWORD", "SITE_NAME", "WORKERS"}


def test_dry_run_prints_the_difference_masks_secrets_and_writes_nothing(
    cli: Cli, tmp_path: Path, canary: str, production: None
) -> None:
    path = tmp_path / "backup.json"
    assert cli("snapshot", "--output", str(path)).code == 0
    system_config_set(key="SITE_NAME", value="broken")
    system_config_set(key="DB_PASSWORD", value="sk-CANARY-new-password", is_sensitive=True)
    system_config_delete(key="WORKERS")
    system_config_set(key="NEW_ONE", value="n")
    before = state()
    events = AuditEvent.objects.count()

    result = cli("restore", str(path), "--dry-run")

    assert result.code == 0, result.err
    assert state() == before and AuditEvent.objects.count() == events
    assert canary not in result.out and "sk-CANARY-new-password" not in result.out
    assert "changed  configsync.systemconfig DB_PASSWORD" in result.out
    assert "secret_value: ******** (secret changed)" in result.out
    assert 'value: "broken" -> "production"' in result.out
    assert "added    configsync.systemconfig WORKERS" in result.out
    assert "removed  configsync.systemconfig NEW_ONE" in result.out
    assert "1 added, 2 changed, 1 removed" in result.out

    report = json.loads(cli("restore", str(path), "--dry-run", "--json").out)
    assert (report["added"], report["changed"], report["removed"]) == (1, 2, 1)
    secret_item = next(i for i in report["items"] if i["key"] == "DB_PASSWORD")
    assert secret_item["secret_fields"] == ["secret_value"]
    assert secret_item["changes"] == {}
    assert canary not in json.dumps(report)


def test_restore_applies_in_one_go_as_new_local_writes_audited_as_restore(
    cli: Cli, tmp_path: Path, canary: str, production: None
) -> None:
    path = tmp_path / "backup.json"
    assert cli("snapshot", "--output", str(path)).code == 0
    system_config_set(key="SITE_NAME", value="broken")
    system_config_set(key="DB_PASSWORD", value="sk-CANARY-new-password", is_sensitive=True)
    system_config_delete(key="WORKERS")
    system_config_set(key="NEW_ONE", value="n")
    untouched_seq = ReplicatedRecord.objects.get(natural_key="DB_PASSWORD").seq
    system_config_set(key="ADDED_LATER", value="later")
    snapshot_seq = {r: s for r, s in ReplicatedRecord.objects.values_list("natural_key", "seq")}

    result = cli("restore", str(path))

    assert result.code == 0, result.err
    assert "1 added, 2 changed, 2 removed" in result.out
    assert SystemConfig.objects.get(key="SITE_NAME").value == "production"
    assert SystemConfig.objects.get(key="DB_PASSWORD").secret_value == canary
    assert SystemConfig.objects.get(key="WORKERS").value == "4"
    assert not SystemConfig.objects.filter(key="NEW_ONE").exists()
    assert not SystemConfig.objects.filter(key="ADDED_LATER").exists()  # not in the snapshot
    removed = ReplicatedRecord.objects.get(natural_key="NEW_ONE")
    assert removed.deleted and removed.seq > snapshot_seq["NEW_ONE"]
    # New local versions (they replicate), in the history and the audit trail as a restore.
    for key in ("SITE_NAME", "DB_PASSWORD", "WORKERS"):
        row = ReplicatedRecord.objects.get(natural_key=key)
        assert row.received_from == "" and row.seq > untouched_seq
        assert RecordVersion.objects.filter(natural_key=key).latest("number").via == "restore"
    events = AuditEvent.objects.filter(via="restore")
    assert set(events.values_list("natural_key", flat=True)) >= {
        "SITE_NAME",
        "DB_PASSWORD",
        "WORKERS",
        "NEW_ONE",
    }
    whole = AuditEvent.objects.get(action="restore")
    assert whole.details["changed"] == 2 and whole.details["removed"] == 2
    assert canary not in json.dumps(list(AuditEvent.objects.values("details", "value_hashes")))


def test_unchanged_records_are_untouched(cli: Cli, tmp_path: Path, production: None) -> None:
    path = tmp_path / "backup.json"
    assert cli("snapshot", "--output", str(path)).code == 0
    before = state()

    result = cli("restore", str(path))

    assert result.code == 0, result.err
    assert "0 added, 0 changed, 0 removed" in result.out
    assert state() == before


def test_restore_swaps_the_default_provider_despite_the_uniqueness_rule(
    tmp_path: Path, canary: str
) -> None:
    ai_provider_set(name="first", kind="openai", api_key=canary, is_default=True)
    ai_provider_set(name="second", kind="openai", api_key=canary)
    document = snapshot_document()
    ai_provider_set(name="second", is_default=True)
    assert AIProviderConfig.objects.get(is_default=True).name == "second"

    snapshot_restore(document=snapshot_load(source=save(tmp_path / "s.json", document)))

    assert AIProviderConfig.objects.get(is_default=True).name == "first"


def tampered(document: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copy = json.loads(json.dumps(document))
    change(copy)
    return document_seal(copy)


CANARY_LIKE = "sk-CANARY-not-a-choice"
"""A value Django's own messages would quote back ("Value '...' is not a valid choice")."""


def workers(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """A tampering of the WORKERS record of a document."""
    return lambda doc: change(next(r for r in doc["records"] if r["key"] == "WORKERS"))


def other_key_token(document: dict[str, Any]) -> dict[str, Any]:
    from configsync.crypto.keyring import Keyring, parse_key

    foreign = Keyring([parse_key(generate_key())])
    token = foreign.encrypt("sk-CANARY-foreign", context="configsync.systemconfig.secret_value:X")

    def change(doc: dict[str, Any]) -> None:
        record = next(r for r in doc["records"] if r["key"] == "DB_PASSWORD")
        record["data"]["secret_value"] = token

    return tampered(document, change)


REFUSALS: dict[str, tuple[Callable[[dict[str, Any]], bytes], str]] = {
    "bad-checksum": (
        lambda d: document_dumps({**d, "created_at": "2001-01-01T00:00:00+00:00"}),
        "checksum does not match",
    ),
    "unknown-format": (
        lambda d: document_dumps(document_seal({**d, "format": "configsync-snapshot/9"})),
        "unknown snapshot format",
    ),
    "not-json": (lambda d: b"{not json", "not JSON"),
    "not-an-object": (lambda d: b"[1, 2]", "not a JSON object"),
    "nesting-bomb": (lambda d: b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "record-shape": (
        lambda d: document_dumps(tampered(d, lambda x: x["records"][0].pop("hlc"))),
        "lacks hlc",
    ),
    "other-group": (
        lambda d: document_dumps(document_seal({**d, "group_id": "another-group"})),
        "another replication group",
    ),
    "missing-key": (
        lambda d: document_dumps(other_key_token(d)),
        "keys this node lacks: key id(s) ",
    ),
    "unknown-model": (
        lambda d: document_dumps(
            tampered(d, lambda x: x["records"][0].update(model="nowhere.thing"))
        ),
        "does not replicate on this node",
    ),
    "lone-surrogate": (  # cannot be sealed: UTF-8 cannot encode it
        lambda d: document_dumps(d).replace(b'"description": ""', b'"description": "\\ud800"', 1),
        "lone surrogate",
    ),
    "nul-in-key": (  # PostgreSQL cannot even look such a key up
        lambda d: document_dumps(
            tampered(
                d, workers(lambda r: r.update(key="W\x00", data={**r["data"], "key": "W\x00"}))
            )
        ),
        "NUL character",
    ),
    "data-names-another-key": (
        lambda d: document_dumps(tampered(d, workers(lambda r: r["data"].update(key="SITE_NAME")))),
        "is not the record's key",
    ),
    "value-quoted-by-django": (
        lambda d: document_dumps(
            tampered(d, workers(lambda r: r["data"].update(value_type=CANARY_LIKE)))
        ),
        "WORKERS",
    ),
    "flag-quoted-by-django": (
        lambda d: document_dumps(
            tampered(d, workers(lambda r: r["data"].update(is_sensitive=CANARY_LIKE)))
        ),
        "WORKERS",
    ),
    "invalid-value": (
        lambda d: document_dumps(
            tampered(
                d,
                lambda x: next(r for r in x["records"] if r["key"] == "WORKERS")["data"].update(
                    value="not a number"
                ),
            )
        ),
        "WORKERS",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS), ids=sorted(REFUSALS))
def test_a_bad_snapshot_is_refused_with_the_reason_and_nothing_is_written(
    case: str, cli: Cli, tmp_path: Path, canary: str, production: None
) -> None:
    build, reason = REFUSALS[case]
    document = snapshot_document()
    system_config_set(key="SITE_NAME", value="changed since")  # something a restore would write
    path = tmp_path / "bad.json"
    path.write_bytes(build(document))
    before = state()
    events = AuditEvent.objects.count()

    for args in ((str(path), "--dry-run"), (str(path),)):
        result = cli("restore", *args)

        assert result.code == 1
        assert reason in result.err
        assert result.err.startswith("configsync: ") and result.err.count("\n") == 1
        assert canary not in result.err and "sk-CANARY-" not in result.err
        assert result.out == ""
    assert state() == before
    assert AuditEvent.objects.count() == events
    assert SystemConfig.objects.get(key="SITE_NAME").value == "changed since"


def test_the_missing_key_ids_are_named(tmp_path: Path, production: None) -> None:
    document = other_key_token(snapshot_document())
    token = next(r for r in document["records"] if r["key"] == "DB_PASSWORD")["data"]
    kid = token["secret_value"].split(":")[1]

    with pytest.raises(SnapshotError, match=kid):
        snapshot_restore(document=snapshot_load(source=save(tmp_path / "s.json", document)))


def test_an_oversized_file_is_refused_before_it_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 2048)
    monkeypatch.setattr(snapshot_document_module, "MAX_SNAPSHOT_BYTES", 1024)

    with pytest.raises(SnapshotError, match="larger than 1024 bytes"):
        snapshot_load(source=str(path))


def test_a_snapshot_claiming_promotion_cannot_smuggle_ciphertext(
    tmp_path: Path, production: None
) -> None:
    document = snapshot_document()
    forged = document_seal({**document, "promoted": True, "group_id": None})
    before = state()

    with pytest.raises(SnapshotError, match="carries no ciphertext"):
        snapshot_restore(document=snapshot_load(source=save(tmp_path / "s.json", forged)))
    assert state() == before


def test_plain_values_are_only_taken_for_secret_fields(production: None) -> None:
    from configsync.replication.services.local import replication_write_version

    before = state()
    data = dict(ReplicatedRecord.objects.get(natural_key="SITE_NAME").data or {})

    with pytest.raises(ValueError, match="not encrypted fields"):
        replication_write_version(
            model_label="configsync.systemconfig",
            natural_key="SITE_NAME",
            deleted=False,
            data=data,
            plain={"value": "sneaky"},
        )
    assert state() == before


def test_a_secret_reencrypted_with_the_same_value_is_unchanged(
    tmp_path: Path, canary: str, production: None
) -> None:
    from configsync.crypto.keyring import get_keyring

    context = "configsync.systemconfig.secret_value:DB_PASSWORD"
    fresh = get_keyring().encrypt(canary, context=context)

    def same_value(doc: dict[str, Any]) -> None:
        record = next(r for r in doc["records"] if r["key"] == "DB_PASSWORD")
        assert record["data"]["secret_value"] != fresh
        record["data"]["secret_value"] = fresh

    document = tampered(snapshot_document(), same_value)
    before = state()

    report = snapshot_restore(document=snapshot_load(source=save(tmp_path / "s.json", document)))

    assert report.items == [] and report.unchanged == 3
    assert state() == before


def test_restoring_a_plain_version_of_a_setting_now_sensitive_needs_reveal(
    cli: Cli, tmp_path: Path, canary: str, settings: Any
) -> None:
    """The snapshot holds a setting while it was plain; it is a secret since. Restoring it would
    show that old value (the history masks it), so it needs the reveal right, as a rollback."""
    system_config_set(key="API_TOKEN", value=canary)
    path = tmp_path / "backup.json"
    assert cli("snapshot", "--output", str(path)).code == 0
    system_config_set(
        key="API_TOKEN", value="sk-CANARY-rotated-0000", is_sensitive=True, allow_reveal=True
    )
    settings.CONFIGSYNC_CLI_REVEAL = False
    before = state()

    for args in (("--dry-run",), ()):
        result = cli("restore", str(path), *args)
        assert result.code == 1, result.out
        assert "reveal right" in result.err and "API_TOKEN" in result.err
        assert canary not in result.out + result.err
        assert state() == before
        assert SystemConfig.objects.get(key="API_TOKEN").is_sensitive
    with pytest.raises(PermissionDenied):
        snapshot_restore(document=snapshot_load(source=str(path)))

    assert not AuditEvent.objects.filter(action="reveal").exists()

    settings.CONFIGSYNC_CLI_REVEAL = True
    dry = cli("restore", str(path), "--dry-run")
    assert dry.code == 0, dry.err
    assert canary not in dry.out and "value: ******** (secret changed)" in dry.out
    report = json.loads(cli("restore", str(path), "--dry-run", "--json").out)
    assert canary not in json.dumps(report)
    assert not AuditEvent.objects.filter(action="reveal").exists()  # the dry run showed nothing
    assert cli("restore", str(path)).code == 0
    restored = SystemConfig.objects.get(key="API_TOKEN")
    assert (restored.is_sensitive, restored.value) == (False, canary)
    reveal = AuditEvent.objects.get(action="reveal", natural_key="API_TOKEN")
    assert reveal.via == "restore"


def test_a_restore_run_again_writes_nothing_tombstones_and_group_members_included(
    tmp_path: Path, canary: str, production: None
) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    ops = Group.objects.create(name="ops")
    get_user_model().objects.create_user(username="bob", password="pw-bob-1").groups.add(ops)
    path = save(tmp_path / "s.json", snapshot_document())
    system_config_set(key="OLD_FLAG", value="back")  # a tombstone in the snapshot
    system_config_set(key="DB_PASSWORD", value="sk-CANARY-new-password", is_sensitive=True)
    get_user_model().objects.get(username="bob").delete()
    ops.delete()

    first = snapshot_restore(document=snapshot_load(source=path))
    after_first = state()
    again = snapshot_restore(document=snapshot_load(source=path))

    assert (first.count("added"), first.count("changed"), first.count("removed")) == (2, 1, 1)
    assert not SystemConfig.objects.filter(key="OLD_FLAG").exists()
    bob = get_user_model().objects.get(username="bob")
    assert bob.check_password("pw-bob-1") and list(bob.groups.values_list("name", flat=True)) == [
        "ops"
    ]
    assert again.items == [] and state() == after_first
