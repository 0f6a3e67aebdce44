"""The ``configsync`` console script as installed (``[project.scripts]``), run in child processes
against a throwaway SQLite node: same subcommands as ``manage.py configsync``, the default
settings module, the usual exit statuses, and shell completion."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from configsync.crypto.keyring import generate_key

# Child processes on a throwaway SQLite node: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "configsync"


def run(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A node on its own SQLite file, migrated; ``DJANGO_SETTINGS_MODULE`` deliberately unset."""
    assert SCRIPT.is_file(), f"{SCRIPT} is missing: install the project (make install)"
    var = tmp_path_factory.mktemp("console")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(var),
        "CONFIGSYNC_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var}/node.sqlite3",
        "CONFIGSYNC_ENCRYPTION_KEYS": generate_key(),
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    migrate = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"],
        env={**env, "DJANGO_SETTINGS_MODULE": "settings.local"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr
    return env


def subcommands(help_text: str) -> list[str]:
    """The lines of the "positional arguments" section of a ``--help``."""
    section = help_text.split("positional arguments:", 1)[1].split("options:", 1)[0]
    return [line.rstrip() for line in section.splitlines() if line.strip()]


def test_help_lists_the_same_subcommands_as_manage_py(node: dict[str, str]) -> None:
    script = run(node, "--help")
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("usage: configsync [-h]")
    managed = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "configsync", "--help"],
        env={**node, "DJANGO_SETTINGS_MODULE": "settings.local"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert managed.returncode == 0, managed.stderr
    listed = subcommands(script.stdout)
    assert listed == subcommands(managed.stdout)
    for name in ("apikey", "set", "get", "sync", "keys", "completion"):
        assert any(line.split()[0] == name for line in listed), name


def test_real_subcommands_on_a_temporary_database(
    node: dict[str, str], tmp_path: Path, canary: str
) -> None:
    """Run from another folder with no settings module named: ``settings.local`` and the
    node's ``DATABASE_URL`` are used."""
    created = run(node, "apikey", "create", "svc", "--write", "--expires", "30d", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]
    prefix = key.split(".", 1)[0]
    listed = json.loads(run(node, "apikey", "list", "--json", cwd=tmp_path).stdout)
    assert [(row["name"], row["prefix"], row["state"]) for row in listed] == [
        ("svc", prefix, "usable")
    ]
    assert listed[0]["expires"] is not None and key.split(".", 1)[1] not in json.dumps(listed)
    assert run(node, "set", "SMTP_PASSWORD", canary, "--sensitive", cwd=tmp_path).returncode == 0
    masked = run(node, "get", "SMTP_PASSWORD", cwd=tmp_path)
    assert masked.returncode == 0 and masked.stdout.splitlines()[-1] == "********"
    assert canary not in masked.stdout + masked.stderr
    revoked = run(node, "apikey", "revoke", "svc", cwd=tmp_path)
    assert revoked.returncode == 0 and prefix in revoked.stdout
    assert "revoked" in run(node, "apikey", "list", cwd=tmp_path).stdout
    database = Path(node["DATABASE_URL"].removeprefix("sqlite:///"))
    assert database.is_file() and not (tmp_path / "var").exists()


def test_failures_exit_non_zero_with_one_line(node: dict[str, str]) -> None:
    missing = run(node, "get", "NOPE")
    assert (missing.returncode, missing.stderr) == (
        1,
        "configsync: no system setting named 'NOPE'\n",
    )
    usage = run(node, "no-such-subcommand")
    assert usage.returncode == 2 and "usage: configsync" in usage.stderr
    assert "invalid choice: 'no-such-subcommand'" in usage.stderr


def test_settings_module_from_the_environment(node: dict[str, str]) -> None:
    """``DJANGO_SETTINGS_MODULE`` wins over the default: production refuses to start without
    its required variables, in one line and status 3."""
    env = {k: v for k, v in node.items() if k != "CONFIGSYNC_ENCRYPTION_KEYS"}
    result = run({**env, "DJANGO_SETTINGS_MODULE": "settings.production"}, "list")
    assert result.returncode == 3
    assert result.stderr.startswith("configsync: configuration error:")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    via_option = run(env, "--settings", "settings.production", "list")
    assert (via_option.returncode, via_option.stderr) == (3, result.stderr)


def test_keys_generate_and_completion_need_no_settings(node: dict[str, str]) -> None:
    env = {"PATH": node["PATH"], "DJANGO_SETTINGS_MODULE": "settings.production"}
    generated = run(env, "keys", "generate")
    assert generated.returncode == 0, generated.stderr
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", generated.stdout)
    code = run(env, "completion", "bash")
    assert code.returncode == 0, code.stderr
    assert "complete " in code.stdout and "configsync" in code.stdout
    assert run(env, "completion", "zsh").stdout.startswith("#compdef configsync")
    wrong = run(env, "completion", "cmd.exe")
    assert wrong.returncode == 2 and "bash" in wrong.stderr


def complete(env: dict[str, str], line: str, tmp_path: Path) -> list[str]:
    """The words argcomplete offers for ``line`` (the protocol the shell code speaks)."""
    out = tmp_path / "completions"
    result = run(
        {
            **env,
            "_ARGCOMPLETE": "1",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_IFS": "\n",
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        }
    )
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    return [word.strip() for word in out.read_text().split("\n") if word.strip()]


def test_completion_of_subcommands_and_options(node: dict[str, str], tmp_path: Path) -> None:
    assert complete(node, "configsync api", tmp_path) == ["apikey"]
    assert set(complete(node, "configsync apikey ", tmp_path)) >= {"create", "list", "revoke"}
    assert complete(node, "configsync apikey create svc --exp", tmp_path) == ["--expires"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_with_the_printed_code(node: dict[str, str]) -> None:
    """The code printed by ``configsync completion bash``, evaluated by bash, completes."""
    script = (
        'eval "$(configsync completion bash)"\n'
        'COMP_LINE="configsync apikey re"; COMP_POINT=${#COMP_LINE}\n'
        "COMP_WORDS=(configsync apikey re); COMP_CWORD=2; COMP_TYPE=9\n"
        "_python_argcomplete configsync re apikey\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**node, "PATH": f"{SCRIPT.parent}{os.pathsep}{node['PATH']}"}
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["revoke"]
