"""The bridge services against a real database: three-way merge, deletions, faults, secrets."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

from configsync.envbridge import files as env_files
from configsync.envbridge import plan as env_plan
from configsync.envbridge import service as env_bridge
from configsync.envbridge.errors import (
    EnvFileChanged,
    EnvFileUnavailable,
    EnvLockTimeout,
    EnvSyntaxError,
)
from configsync.envbridge.service import env_diff, env_export, env_import, env_sync
from configsync.locks import named_lock
from configsync.models import Conflict, EnvBridgeBase, SystemConfig
from configsync.services.system_config import system_config_delete, system_config_set

pytestmark = pytest.mark.django_db

WriteEnv = Callable[..., Path]


def _value(key: str) -> str | None:
    record = SystemConfig.objects.filter(key=key).first()
    return None if record is None else record.raw_value()


def _sync(path: Path) -> env_bridge.EnvBridgeReport:
    return env_sync(path=str(path))


def test_first_run_imports_file_only_exports_db_only_and_keeps_the_file(
    write_env: WriteEnv, env_path: Path
) -> None:
    original = "# app\nexport APP_NAME='demo app'\n\nDEBUG=false # dev only\n"
    write_env(original)
    system_config_set(key="FROM_DB", value="db value")
    report = _sync(env_path)
    assert {c.name for c in report.to_db} == {"APP_NAME", "DEBUG"}
    assert [c.name for c in report.to_file] == ["FROM_DB"]
    assert _value("APP_NAME") == "demo app" and _value("DEBUG") == "false"
    assert SystemConfig.objects.get(key="APP_NAME").category == "env"
    assert env_path.read_text() == original + "FROM_DB='db value'\n"
    assert set(EnvBridgeBase.objects.values_list("variable", flat=True)) == {
        "APP_NAME",
        "DEBUG",
        "FROM_DB",
    }


def test_second_run_changes_nothing_and_does_not_touch_the_file(
    write_env: WriteEnv, env_path: Path
) -> None:
    write_env("A=1\nB='two'\n")
    _sync(env_path)
    before = env_path.stat().st_mtime_ns
    report = _sync(env_path)
    assert report.changes == [] and not report.file_written
    assert env_path.stat().st_mtime_ns == before


def test_changed_only_in_the_file_reaches_the_database(write_env: WriteEnv, env_path: Path) -> None:
    write_env("A=1\nB=2\n")
    _sync(env_path)
    write_env("A=1\nB=20\n")
    report = _sync(env_path)
    assert [(c.name, c.action) for c in report.changes] == [("B", "set_db")]
    assert _value("B") == "20" and not report.file_written


def test_changed_only_in_the_database_reaches_the_file_byte_exact(
    write_env: WriteEnv, env_path: Path
) -> None:
    write_env("# keep\nexport  A = 'one'   # note\r\nB=2\n")
    _sync(env_path)
    system_config_set(key="A", value="uno")
    report = _sync(env_path)
    assert [(c.name, c.action) for c in report.changes] == [("A", "set_file")]
    assert env_path.read_bytes() == b"# keep\nexport  A = 'uno'   # note\r\nB=2\n"


def test_values_are_compared_as_their_record_type(write_env: WriteEnv, env_path: Path) -> None:
    system_config_set(key="WORKERS", value=80, value_type="int")
    write_env("WORKERS=0080\n")
    report = _sync(env_path)
    assert report.changes == [] and env_path.read_text() == "WORKERS=0080\n"
    system_config_set(key="WORKERS", value=81)
    _sync(env_path)
    assert env_path.read_text() == "WORKERS=81\n"


def test_both_changed_the_newer_file_wins_and_the_loser_is_kept(
    write_env: WriteEnv, env_path: Path
) -> None:
    write_env("A=base\n", age=100)
    _sync(env_path)
    system_config_set(key="A", value="from-db")
    write_env("A=from-file\n", age=-60)  # edited after the database change: the file is newer
    report = _sync(env_path)
    assert [(c.action, c.conflict, c.winner) for c in report.changes] == [("set_db", True, "file")]
    assert _value("A") == "from-file"
    conflict = Conflict.objects.get(natural_key="A")
    assert conflict.winner == "remote"
    assert conflict.local_version["data"]["value"] == "from-db"
    assert conflict.remote_version["data"]["value"] == "from-file"
    assert conflict.remote_version["origin"] == f"env-file:{env_path}"
    assert conflict.source.startswith("env-file:")


def test_both_changed_the_newer_database_wins(write_env: WriteEnv, env_path: Path) -> None:
    write_env("A=base\n")
    _sync(env_path)
    write_env("A=from-file\n", age=3600)
    system_config_set(key="A", value="from-db")
    report = _sync(env_path)
    assert [(c.action, c.winner) for c in report.changes] == [("set_file", "db")]
    assert env_path.read_text() == "A=from-db\n" and _value("A") == "from-db"
    conflict = Conflict.objects.get(natural_key="A")
    assert conflict.winner == "local"
    assert conflict.remote_version["data"]["value"] == "from-file"


def test_conflicts_keep_secrets_encrypted(write_env: WriteEnv, env_path: Path, canary: str) -> None:
    write_env("STRIPE_API_KEY=sk-CANARY-base\n", age=100)
    _sync(env_path)
    system_config_set(key="STRIPE_API_KEY", value="sk-CANARY-db")
    write_env(f"STRIPE_API_KEY={canary}\n", age=-60)  # newer than the database change
    _sync(env_path)
    assert _value("STRIPE_API_KEY") == canary
    dumped = json.dumps(list(Conflict.objects.values("local_version", "remote_version")))
    assert "sk-CANARY" not in dumped
    assert Conflict.objects.get().remote_version["data"]["secret_value"]


def test_removed_from_the_file_deletes_only_a_record_the_bridge_managed(
    write_env: WriteEnv, env_path: Path
) -> None:
    write_env("A=1\nB=2\n")
    _sync(env_path)
    system_config_set(key="UNSEEN", value="x")  # created in the database, never in the file
    write_env("B=2\n")
    report = _sync(env_path)
    assert ("A", "delete_db") in [(c.name, c.action) for c in report.changes]
    assert _value("A") is None
    assert _value("UNSEEN") == "x"  # exported, not deleted
    assert "UNSEEN=x" in env_path.read_text()


def test_deleted_in_the_database_removes_every_line(write_env: WriteEnv, env_path: Path) -> None:
    write_env("# about A\nA=1\nB=2\nexport A=3\n")
    _sync(env_path)
    system_config_delete(key="A")
    report = _sync(env_path)
    assert [(c.name, c.action) for c in report.changes] == [("A", "delete_file")]
    assert env_path.read_text() == "# about A\nB=2\n"
    assert not EnvBridgeBase.objects.filter(variable="A").exists()


def test_a_value_of_the_wrong_type_is_skipped_and_the_rest_applied(
    write_env: WriteEnv, env_path: Path
) -> None:
    system_config_set(key="WORKERS", value=80, value_type="int")
    write_env("WORKERS=80\nNAME=a\n")
    _sync(env_path)
    write_env("WORKERS=eighty\nNAME=b\n")
    report = _sync(env_path)
    assert [(s.name, s.line) for s in report.skipped] == [("WORKERS", 1)]
    assert "int" in report.skipped[0].reason and "eighty" not in report.skipped[0].reason
    assert SystemConfig.objects.get(key="WORKERS").typed_value() == 80
    assert _value("NAME") == "b"
    assert env_path.read_text() == "WORKERS=eighty\nNAME=b\n"


def test_a_malformed_line_changes_nothing_in_either_direction(
    write_env: WriteEnv, env_path: Path
) -> None:
    write_env("A=1\n")
    _sync(env_path)
    system_config_set(key="A", value="db-side")
    bad = "A=1\nB=new\nthis line is wrong\n"
    write_env(bad)
    with pytest.raises(EnvSyntaxError, match="line 3"):
        _sync(env_path)
    assert env_path.read_text() == bad
    assert _value("A") == "db-side" and _value("B") is None


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dir.env").mkdir()
    with pytest.raises(EnvFileUnavailable, match="cannot read"):
        env_sync(path=str(tmp_path / "dir.env"))
    assert not SystemConfig.objects.exists()


def test_a_failed_write_leaves_file_and_database_untouched(
    write_env: WriteEnv, env_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("A=1\n")
    system_config_set(key="B", value="2")

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(EnvFileUnavailable, match="No space left"):
        _sync(env_path)
    assert env_path.read_text() == "A=1\n"
    assert _value("A") is None  # the import of A was rolled back with the failed write
    assert not EnvBridgeBase.objects.exists()
    assert [p.name for p in env_path.parent.iterdir()] == [env_path.name]


def test_a_file_edited_during_the_run_is_not_overwritten(
    write_env: WriteEnv, env_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("A=1\n")
    system_config_set(key="B", value="2")
    real_read = env_files.file_read

    def read_then_edit(real: str) -> env_files.FileState:
        state = real_read(real)
        Path(real).write_text("A=operator-edit\n")
        return state

    monkeypatch.setattr(env_files, "file_read", read_then_edit)
    with pytest.raises(EnvFileChanged):
        _sync(env_path)
    assert env_path.read_text() == "A=operator-edit\n"
    assert _value("A") is None


def test_missing_file_that_was_managed_is_not_a_mass_deletion(
    write_env: WriteEnv, env_path: Path
) -> None:
    write_env("A=1\n")
    _sync(env_path)
    env_path.unlink()
    with pytest.raises(EnvFileUnavailable, match="does not exist"):
        _sync(env_path)
    assert _value("A") == "1"
    env_export(path=str(env_path))
    assert env_path.read_text() == "A=1\n"


def test_export_creates_a_new_file_0600(env_path: Path) -> None:
    system_config_set(key="A", value="x y")
    env_export(path=str(env_path))
    assert env_path.read_text() == "A='x y'\n"
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600


def test_rewrites_keep_the_file_mode(write_env: WriteEnv, env_path: Path) -> None:
    write_env("A=1\n", mode=0o644)
    system_config_set(key="B", value="2")
    _sync(env_path)
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o644


def test_import_and_export_force_one_direction(write_env: WriteEnv, env_path: Path) -> None:
    write_env("A=1\n")
    _sync(env_path)
    system_config_set(key="A", value="db")
    write_env("A=file\n", age=3600)  # older than the database change
    env_import(path=str(env_path))
    assert _value("A") == "file"
    system_config_set(key="A", value="db2")
    write_env("A=file2\n")
    env_export(path=str(env_path))
    assert env_path.read_text() == "A=db2\n" and _value("A") == "db2"


def test_secret_names_become_sensitive_records(
    write_env: WriteEnv, env_path: Path, canary: str
) -> None:
    write_env(f"API_KEY={canary}\nCACHE_URL=redis://:{canary}@cache/0\nPLAIN=x\n")
    _sync(env_path)
    assert SystemConfig.objects.get(key="API_KEY").is_sensitive
    assert SystemConfig.objects.get(key="CACHE_URL").is_sensitive
    assert not SystemConfig.objects.get(key="PLAIN").is_sensitive
    with connection.cursor() as cursor:
        cursor.execute("SELECT value, secret_value FROM configsync_systemconfig")
        raw_rows = repr(cursor.fetchall())
        cursor.execute("SELECT base_value, base_secret FROM configsync_envbridgebase")
        raw_bases = repr(cursor.fetchall())
    assert canary not in raw_rows and canary not in raw_bases


def test_diff_changes_nothing_and_masks_secrets(
    write_env: WriteEnv, env_path: Path, canary: str
) -> None:
    write_env(f"DB_PASSWORD={canary}\nA=1\n")
    report = env_diff(path=str(env_path))
    assert {c.name for c in report.to_db} == {"DB_PASSWORD", "A"}
    assert not SystemConfig.objects.exists() and not EnvBridgeBase.objects.exists()
    assert canary not in json.dumps(report.as_dict())


def test_excluded_node_settings_are_never_touched(write_env: WriteEnv, env_path: Path) -> None:
    write_env("DATABASE_URL=sqlite:///x\nDJANGO_SECRET_KEY=abc\nAPP=1\n")
    _sync(env_path)
    assert list(SystemConfig.objects.values_list("key", flat=True)) == ["APP"]


def test_a_held_lock_keeps_a_second_run_out(
    write_env: WriteEnv, env_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("A=1\n")
    monkeypatch.setattr(env_bridge, "LOCK_WAIT_SECONDS", 0)
    with named_lock(f"env-bridge:{os.path.realpath(env_path)}") as acquired:
        assert acquired
        with pytest.raises(EnvLockTimeout):
            _sync(env_path)
    assert _value("A") is None
    _sync(env_path)
    assert _value("A") == "1"


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_are_serialized(write_env: WriteEnv, env_path: Path) -> None:
    names = [f"FILE_{i}" for i in range(15)]
    write_env("".join(f"{name}={i}\n" for i, name in enumerate(names)))
    for i in range(15):
        system_config_set(key=f"DB_{i}", value=str(i))
    reports: list[env_bridge.EnvBridgeReport] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait()
            reports.append(_sync(env_path))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(len(r.changes) for r in reports) == 30  # each change applied exactly once
    assert sum(1 for r in reports if r.file_written) == 1
    text = env_path.read_text()
    for i in range(15):
        assert text.count(f"DB_{i}={i}\n") == 1
    assert {r.key for r in SystemConfig.objects.all()} == {*names, *(f"DB_{i}" for i in range(15))}


def test_a_record_changed_during_the_run_is_not_overwritten(
    write_env: WriteEnv, env_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env("A=1\n")
    _sync(env_path)
    write_env("A=from-file\n")
    real_rows = env_plan.replicated_rows

    def replicated_change_arrives(keys: set[str]) -> Any:
        system_config_set(key="A", value="replicated")  # lands after the run read the record
        return real_rows(keys)

    monkeypatch.setattr(env_plan, "replicated_rows", replicated_change_arrives)
    report = _sync(env_path)
    assert report.deferred == ["A"] and report.changes == []
    assert _value("A") == "replicated"
    monkeypatch.setattr(env_plan, "replicated_rows", real_rows)
    report = _sync(env_path)  # the next run merges it: both changed, one wins, loser kept
    assert [c.conflict for c in report.changes] == [True]
    assert _value("A") == file_values(env_path)["A"]
    assert Conflict.objects.filter(natural_key="A").count() == 1


def file_values(path: Path) -> dict[str, str]:
    from configsync.envbridge.envfile import EnvDocument

    return EnvDocument.parse_bytes(path.read_bytes()).values()


def test_an_env_file_conflict_resolves_like_any_other(
    write_env: WriteEnv, env_path: Path, canary: str
) -> None:
    from configsync.replication.services.conflicts import conflict_resolve

    write_env("SERVICE_TOKEN=sk-CANARY-base\n")
    _sync(env_path)
    write_env(f"SERVICE_TOKEN={canary}\n", age=3600)  # older than the database change below
    system_config_set(key="SERVICE_TOKEN", value="sk-CANARY-db")
    _sync(env_path)
    conflict = Conflict.objects.get(natural_key="SERVICE_TOKEN")
    assert conflict.winner == "local" and _value("SERVICE_TOKEN") == "sk-CANARY-db"
    conflict_resolve(conflict_id=conflict.pk, choice="remote")  # the operator picks the file's
    assert _value("SERVICE_TOKEN") == canary
    assert SystemConfig.objects.get(key="SERVICE_TOKEN").is_sensitive
    _sync(env_path)
    assert file_values(env_path) == {"SERVICE_TOKEN": canary}


def test_a_secret_stays_secret_when_its_record_was_deleted_and_the_file_wins(
    write_env: WriteEnv, env_path: Path, canary: str
) -> None:
    # DB_PASS matches no secret pattern: only the operator's flag (kept in the base) says secret.
    system_config_set(key="DB_PASS", value="sk-CANARY-base", is_sensitive=True)
    write_env("DB_PASS=sk-CANARY-base\n", age=100)
    _sync(env_path)
    system_config_delete(key="DB_PASS")
    diff = env_diff(path=str(env_path))  # would remove the line: the old value stays masked
    assert [(c.action, c.sensitive) for c in diff.changes] == [("delete_file", True)]
    assert "sk-CANARY" not in json.dumps(diff.as_dict())
    write_env(f"DB_PASS={canary}\n", age=-60)  # edited after the deletion: the file wins
    report = _sync(env_path)
    assert [(c.action, c.conflict, c.sensitive) for c in report.changes] == [("set_db", True, True)]
    assert canary not in json.dumps(report.as_dict())
    assert SystemConfig.objects.get(key="DB_PASS").is_sensitive and _value("DB_PASS") == canary
    with connection.cursor() as cursor:
        cursor.execute("SELECT value, secret_value FROM configsync_systemconfig")
        raw_rows = repr(cursor.fetchall())
        cursor.execute("SELECT base_value, base_secret FROM configsync_envbridgebase")
        raw_bases = repr(cursor.fetchall())
    dumped = json.dumps(list(Conflict.objects.values("local_version", "remote_version")))
    assert canary not in raw_rows + raw_bases + dumped
