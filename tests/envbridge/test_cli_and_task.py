"""``configsync env ...`` on the command line; the ``env_sync`` task, beat entry and receiver."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import override_settings

from configsync import tasks
from configsync.envbridge.receivers import _PENDING_KEY
from configsync.models import SystemConfig
from configsync.services.system_config import system_config_set
from configsync.signals import change_committed
from tests.support.cli import CliResult

pytestmark = pytest.mark.django_db

Cli = Callable[..., CliResult]
"""The shared ``cli`` fixture (tests/conftest.py): runs ``manage.py configsync`` in-process."""


@pytest.fixture
def no_pending_enqueue() -> Iterator[None]:
    """No debounce window left open by another test: the next committed change enqueues."""
    cache.delete(_PENDING_KEY)
    yield
    cache.delete(_PENDING_KEY)


def test_diff_then_sync(cli: Cli, write_env: Callable[..., Path], canary: str) -> None:
    path = write_env(f"APP=one\nSERVICE_TOKEN={canary}\n")
    system_config_set(key="FROM_DB", value="x")
    diff = cli("env", "diff", "--file", str(path))
    assert diff.code == 0
    assert "file -> database:" in diff.out and "database -> file:" in diff.out
    assert "SERVICE_TOKEN" in diff.out and "********" in diff.out and canary not in diff.out
    assert not SystemConfig.objects.filter(key="APP").exists()

    as_json = json.loads(cli("env", "diff", "--file", str(path), "--json").out)
    assert {c["name"] for c in as_json["changes"]} == {"APP", "SERVICE_TOKEN", "FROM_DB"}
    assert canary not in json.dumps(as_json)

    synced = cli("env", "sync", "--file", str(path))
    assert synced.code == 0 and "applied 2 change(s) to the database, 1 to the file" in synced.out
    assert SystemConfig.objects.get(key="APP").raw_value() == "one"
    assert path.read_text().endswith("FROM_DB=x\n")


def test_import_and_export(cli: Cli, write_env: Callable[..., Path]) -> None:
    path = write_env("A=from-file\n")
    assert cli("env", "import", "--file", str(path)).code == 0
    system_config_set(key="A", value="from-db")
    assert cli("env", "export", "--file", str(path)).code == 0
    assert path.read_text() == "A=from-db\n"


def test_the_file_defaults_to_configsync_env_file(cli: Cli, write_env: Callable[..., Path]) -> None:
    path = write_env("A=1\n")
    with override_settings(CONFIGSYNC_ENV_FILE=str(path)):
        assert cli("env", "sync").code == 0
    assert SystemConfig.objects.get(key="A").raw_value() == "1"


def test_no_file_configured_is_a_one_line_error(cli: Cli) -> None:
    result = cli("env", "sync")
    assert result.code == 1
    assert result.err.strip().count("\n") == 0 and "CONFIGSYNC_ENV_FILE" in result.err


def test_malformed_file_exits_1_naming_the_line(cli: Cli, write_env: Callable[..., Path]) -> None:
    path = write_env("A=1\nnot an assignment\n")
    result = cli("env", "sync", "--file", str(path))
    assert result.code == 1 and "line 2" in result.err
    assert result.err.strip().count("\n") == 0
    assert not SystemConfig.objects.exists()


def test_skipped_variables_exit_1_after_applying_the_rest(
    cli: Cli, write_env: Callable[..., Path]
) -> None:
    system_config_set(key="WORKERS", value=4, value_type="int")
    path = write_env("WORKERS=four\nNAME=x\n")
    result = cli("env", "sync", "--file", str(path))
    assert result.code == 1
    assert "WORKERS (line 1)" in result.err and "four" not in result.err
    assert "applied 1 change(s) to the database" in result.out
    assert SystemConfig.objects.get(key="NAME").raw_value() == "x"


# --- the task, the beat entry and the receiver --------------------------------------------------
def test_beat_runs_env_sync_only_when_a_file_is_configured(tmp_path: Path) -> None:
    with override_settings(CONFIGSYNC_ENV_FILE="", CONFIGSYNC_SYNC_INTERVAL_SECONDS=30):
        assert "configsync-env-sync" not in tasks.beat_schedule()
    with override_settings(
        CONFIGSYNC_ENV_FILE=str(tmp_path / "x.env"), CONFIGSYNC_SYNC_INTERVAL_SECONDS=30
    ):
        entry = tasks.beat_schedule()["configsync-env-sync"]
        assert entry["task"] == "configsync.tasks.env_sync"
        assert entry["schedule"].total_seconds() == 30
    with override_settings(
        CONFIGSYNC_ENV_FILE=str(tmp_path / "x.env"), CONFIGSYNC_SYNC_INTERVAL_SECONDS=0
    ):
        assert "configsync-env-sync" not in tasks.beat_schedule()


def test_task_runs_the_bridge_and_is_safe_to_rerun(write_env: Callable[..., Path]) -> None:
    path = write_env("A=1\n")
    with override_settings(CONFIGSYNC_ENV_FILE=str(path)):
        assert tasks.env_sync.apply().get() is True
        assert tasks.env_sync.apply().get() is True
    assert SystemConfig.objects.get(key="A").raw_value() == "1"
    with override_settings(CONFIGSYNC_ENV_FILE=""):
        assert tasks.env_sync.apply().get() is False


def test_task_logs_a_malformed_file_and_changes_nothing(
    write_env: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_env("A=1\nbroken line\n")
    with override_settings(CONFIGSYNC_ENV_FILE=str(path)):
        assert tasks.env_sync.apply().get() is False
    assert "line 2" in caplog.text
    assert not SystemConfig.objects.exists()


def _committed(**kwargs: Any) -> None:
    defaults = {
        "model_label": "configsync.systemconfig",
        "natural_key": "A",
        "seq": 1,
        "deleted": False,
        "local": False,
    }
    change_committed.send(sender=SystemConfig, **{**defaults, **kwargs})


@pytest.mark.usefixtures("no_pending_enqueue")
def test_a_committed_change_enqueues_one_env_sync(tmp_path: Path) -> None:
    with (
        override_settings(CONFIGSYNC_ENV_FILE=str(tmp_path / "x.env")),
        mock.patch.object(tasks.env_sync, "apply_async") as enqueue,
    ):
        _committed()
        _committed(natural_key="B")  # debounced into the same run
        _committed(model_label="providers.aiproviderconfig")
    assert enqueue.call_count == 1
    assert enqueue.call_args.kwargs["countdown"] > 0
    assert enqueue.call_args.args == ()  # the task takes no values


@pytest.mark.usefixtures("no_pending_enqueue")
def test_no_enqueue_without_a_file_or_from_the_bridge_itself(tmp_path: Path) -> None:
    with mock.patch.object(tasks.env_sync, "apply_async") as enqueue:
        with override_settings(CONFIGSYNC_ENV_FILE=""):
            _committed()
        from configsync.envbridge import service as env_bridge

        with (
            override_settings(CONFIGSYNC_ENV_FILE=str(tmp_path / "x.env")),
            env_bridge._marked_running(),
        ):
            _committed()
    assert enqueue.call_count == 0
