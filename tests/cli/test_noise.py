"""A successful ``manage.py configsync`` call is quiet on stderr; the development-key warning is
one line, once per process, and only where it helps (a secret encrypted with that key); kombu's
"No hostname was supplied" never appears (the embedded broker has no host to supply).

Real processes on ``settings.local`` with nothing configured but the node's folder: the
development key, SQLite and the embedded broker, as after ``make run``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Child processes on a throwaway SQLite node with the embedded defaults: the same in either CI
# pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]
DEV_KEY_LINE = "No CONFIGSYNC_ENCRYPTION_KEYS set: using the development key in"


class Node:
    def __init__(self, var_dir: Path) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "settings.local",
            "CONFIGSYNC_VAR_DIR": str(var_dir),
            # A peer that is not there: writes enqueue a push through the broker.
            "CONFIGSYNC_PEERS": "b=http://127.0.0.1:9",
            "CONFIGSYNC_SYNC_SECRET": "noise-test-sync-secret",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("configsync", *args)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("noise") / "var")
    migrated = node.run("migrate", "--noinput", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    # migrate runs every system check, so the development key was generated there, with W001.
    assert "generated a development key" in migrated.stderr
    assert "configsync.W001" in migrated.stderr
    # What ``get PLAIN_SETTING`` reads: set here, not by another case, which pytest-xdist may
    # run in another process (on another node).
    stored = node.cli("set", "PLAIN_SETTING", "value")
    assert stored.returncode == 0, stored.stderr
    yield node


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.splitlines()


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("set", "PLAIN_SETTING", "value"),  # enqueues the push to the peer: publishes
        ("get", "PLAIN_SETTING"),
        ("list", "--json"),
        ("mode", "show"),
    ],
    ids=" ".join,
)
def test_a_successful_call_prints_nothing_on_stderr(node: Node, args: tuple[str, ...]) -> None:
    result = node.cli(*args)
    assert result.returncode == 0, result.stderr
    assert stderr_lines(result) == []


def test_encrypting_with_the_development_key_says_so_in_one_line(node: Node) -> None:
    stored = node.cli("set", "API_TOKEN", "sk-CANARY-noise-1", "--sensitive")
    assert stored.returncode == 0, stored.stderr
    (line,) = stderr_lines(stored)
    assert DEV_KEY_LINE in line and "dev-encryption.key" in line
    assert "sk-CANARY" not in stored.stderr


def test_the_line_comes_once_per_process_however_many_secrets_it_encrypts(node: Node) -> None:
    script = (
        "from configsync.services.system_config import system_config_set\n"
        "for n in range(3):\n"
        "    system_config_set(key=f'S_{n}', value=f'sk-CANARY-noise-{n}', is_sensitive=True)\n"
    )
    result = node.run("shell", "-c", script)
    assert result.returncode == 0, result.stderr
    assert [line for line in stderr_lines(result) if DEV_KEY_LINE in line] == [
        stderr_lines(result)[0]
    ]


def test_reading_a_secret_back_is_quiet(node: Node) -> None:
    """Decrypting says nothing: every command's system checks read stored secrets."""
    assert node.cli("set", "READ_ME", "sk-CANARY-noise-read", "--sensitive").returncode == 0
    result = node.cli("get", "READ_ME", "--reveal")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("sk-CANARY-noise-read")
    assert stderr_lines(result) == []


def test_sync_prints_only_its_own_outcome(node: Node) -> None:
    """No kombu "No hostname was supplied", no development-key warning: one line, the failure
    (the peer is not there), naming the peer and the reason."""
    result = node.cli("sync")
    assert result.returncode == 1
    assert stderr_lines(result) == [
        "configsync: sync failed with b (peer b unreachable: ConnectionError)"
    ]
    assert "No hostname" not in result.stdout + result.stderr
