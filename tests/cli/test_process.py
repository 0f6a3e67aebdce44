"""The real command line in a child process: exit codes, stderr, stdin, and the stored bytes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from configsync.crypto.keyring import generate_key

# Child processes on a throwaway SQLite node: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a throwaway node on its own SQLite file, migrated."""
    var = tmp_path_factory.mktemp("node")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(var),
        "DJANGO_SETTINGS_MODULE": "settings.local",
        "CONFIGSYNC_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var}/node.sqlite3",
        "CONFIGSYNC_ENCRYPTION_KEYS": generate_key(),
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    run(env, "migrate", "--noinput", "-v0", check=True)
    return env


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def test_exit_codes_stderr_and_stdin(node: dict[str, str], canary: str) -> None:
    stored = run(node, "configsync", "set", "SMTP_PASSWORD", "-", "--sensitive", stdin=canary)
    assert stored.returncode == 0, stored.stderr
    assert canary not in stored.stdout + stored.stderr

    masked = run(node, "configsync", "get", "SMTP_PASSWORD")
    assert masked.returncode == 0 and masked.stdout.splitlines()[-1] == "********"
    revealed = run(node, "configsync", "get", "SMTP_PASSWORD", "--reveal")
    assert revealed.stdout.splitlines()[-1] == canary

    missing = run(node, "configsync", "get", "NOPE")
    assert missing.returncode == 1
    assert missing.stderr == "configsync: no system setting named 'NOPE'\n"

    bad = run(node, "configsync", "set", "PORT", "eighty", "--type", "int")
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "Enter a whole number" in bad.stderr

    database = Path(node["DATABASE_URL"].removeprefix("sqlite:///"))
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT * FROM configsync_systemconfig").fetchall()
    assert rows and canary not in repr(rows)
    for path in database.parent.iterdir():
        if path.name.startswith("node.sqlite3"):
            assert canary.encode() not in path.read_bytes(), path.name


def test_keys_generate_needs_no_settings() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "settings.production"}
    result = run(env, "configsync", "keys", "generate")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 43 and result.stdout.count("\n") == 1
