"""One folder per node: every piece of a node's local state follows ``CONFIGSYNC_VAR_DIR``.

Two nodes on one host (the README's recipe: their own ``PORT`` and ``CONFIGSYNC_VAR_DIR``, no
``DATABASE_URL``) get two SQLite databases, two development keys, two embedded brokers, two beat
schedules and two lock folders; a folder that cannot be created or written stops start-up with
one line naming the variable.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.settings.test_environment import exactly_this_environment, load_settings

# Child processes with only CONFIGSYNC_VAR_DIR set: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]
LOCAL_STATE = (
    "database",
    "dev key",
    "broker in",
    "broker out",
    "broker control",
    "beat schedule",
    "locks",
    "static root",
)


def node_settings(var_dir: str) -> ModuleType:
    """``settings.local`` imported afresh with only ``CONFIGSYNC_VAR_DIR`` set (no DATABASE_URL,
    no REDIS_URL, no broker, no keys), as a second node on one host starts."""
    env = {"PATH": os.environ.get("PATH", ""), "CONFIGSYNC_VAR_DIR": var_dir}
    package = sys.modules["settings"]
    names = ("settings.base", "settings.local")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    try:
        with exactly_this_environment(env):
            return importlib.import_module("settings.local")
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        for name, module in saved.items():
            setattr(package, name.rpartition(".")[2], module)


def local_state(settings: ModuleType) -> dict[str, Path]:
    """Where a node keeps each piece of its local state, as its settings say."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    return {
        "database": Path(settings.DATABASES["default"]["NAME"]),
        "dev key": Path(settings.CONFIGSYNC_DEV_KEY_FILE),
        "broker in": Path(options["data_folder_in"]),
        "broker out": Path(options["data_folder_out"]),
        "broker control": Path(options["control_folder"]),
        "beat schedule": Path(settings.CELERY_BEAT_SCHEDULE_FILENAME),
        # configsync.locks: <CONFIGSYNC_VAR_DIR>/locks (configsync.conf.AppSettings.var_dir)
        "locks": Path(settings.CONFIGSYNC_VAR_DIR) / "locks",
        "static root": Path(settings.STATIC_ROOT),
    }


def test_two_nodes_on_one_host_keep_all_their_local_state_apart(tmp_path: Path) -> None:
    first = node_settings(str(tmp_path / "node-a"))
    second = node_settings(str(tmp_path / "node-b"))
    state_a, state_b = local_state(first), local_state(second)
    assert tuple(state_a) == LOCAL_STATE
    for what in LOCAL_STATE:
        assert state_a[what] != state_b[what], what
        assert state_a[what].is_relative_to(tmp_path / "node-a"), (what, state_a[what])
        assert state_b[what].is_relative_to(tmp_path / "node-b"), (what, state_b[what])
    assert first.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert first.CELERY_BROKER_URL == second.CELERY_BROKER_URL == "configsync-fs://"
    # The embedded broker's folders exist once the settings are loaded (kombu does not make them).
    assert state_a["broker in"].is_dir() and state_b["broker control"].is_dir()


def test_a_relative_var_dir_is_taken_from_the_project_directory(tmp_path: Path) -> None:
    """web, worker and beat started from different working directories agree on one folder."""
    relative = os.path.relpath(tmp_path / "relative-node", ROOT)
    settings = node_settings(relative)
    expected = ROOT / relative
    assert expected == settings.VAR_DIR
    assert expected / "configsync.sqlite3" == Path(settings.DATABASES["default"]["NAME"])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("/proc/configsync-node", "cannot create the directory"),
        ("/proc", "the directory is not writable"),
        ("FILE", "cannot create the directory"),
    ],
    ids=["cannot-create", "not-writable", "a-file"],
)
def test_a_var_dir_that_cannot_be_created_or_written_stops_with_one_line(
    tmp_path: Path, value: str, reason: str
) -> None:
    if value == "FILE":
        (tmp_path / "taken").write_text("a file, not a folder")
        value = str(tmp_path / "taken")
    status, output = load_settings("local", tmp_path, CONFIGSYNC_VAR_DIR=value)
    assert status == 3
    assert output.count("\n") == 1, output
    assert output.startswith(f"configsync: configuration error: CONFIGSYNC_VAR_DIR: {reason}")
    assert "Traceback" not in output


def cli(var_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``manage.py ARGS`` as a node of the README's recipe: nothing set but its folder."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "settings.local",
            "CONFIGSYNC_VAR_DIR": str(var_dir),
            **extra,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_two_nodes_from_the_readme_recipe_have_two_databases(tmp_path: Path) -> None:
    """Real processes: what one node stores, the other's database does not hold."""
    nodes = {"a": tmp_path / "var-a", "b": tmp_path / "var-b"}
    for name, var_dir in nodes.items():
        migrate = cli(var_dir, "migrate", "--noinput", "-v0")
        assert migrate.returncode == 0, migrate.stderr
        stored = cli(var_dir, "configsync", "set", f"ONLY_ON_{name.upper()}", name, "--sensitive")
        assert stored.returncode == 0, stored.stderr
    for name, var_dir in nodes.items():
        assert (var_dir / "configsync.sqlite3").is_file()
        assert (var_dir / "dev-encryption.key").is_file()
        listed = cli(var_dir, "configsync", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        other = "b" if name == "a" else "a"
        assert f"ONLY_ON_{name.upper()}" in listed.stdout
        assert f"ONLY_ON_{other.upper()}" not in listed.stdout
    assert (nodes["a"] / "dev-encryption.key").read_text() != (
        nodes["b"] / "dev-encryption.key"
    ).read_text()


def test_a_cli_call_with_an_unusable_var_dir_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = cli(Path("/proc/configsync-node"), "configsync", "list")
    assert result.returncode == 3
    assert result.stderr == (
        "configsync: configuration error: CONFIGSYNC_VAR_DIR: cannot create the directory "
        "(No such file or directory)\n"
    )
    assert result.stdout == ""
