"""Start-up with missing or malformed keys: one clear line naming the variable, no traceback."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from configsync.crypto.keyring import generate_key

# Child processes with environments of their own: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def production(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "settings.production",
        "DJANGO_SECRET_KEY": "test-only-not-a-secret",
        "DJANGO_ALLOWED_HOSTS": "configsync.example",
        "CONFIGSYNC_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        **extra,
    }


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (None, "CONFIGSYNC_ENCRYPTION_KEYS"),
        ("", "CONFIGSYNC_ENCRYPTION_KEYS is empty"),
        ("c2hvcnQ", "CONFIGSYNC_ENCRYPTION_KEYS is not 32 bytes"),
    ],
)
def test_production_refuses_to_start_without_a_usable_key(
    tmp_path: Path, keys: str | None, expected: str
) -> None:
    env = production(tmp_path)
    if keys is not None:
        env["CONFIGSYNC_ENCRYPTION_KEYS"] = keys
    result = manage(env, "check")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    if keys:
        assert keys not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["celery", "-A", "settings", "worker", "--loglevel=INFO"],
        ["gunicorn", "settings.wsgi", "--bind", "127.0.0.1:0", "--workers", "1"],
    ],
    ids=["celery-worker", "gunicorn"],
)
def test_every_entry_point_stops_with_one_line_and_no_respawn(
    tmp_path: Path, command: list[str]
) -> None:
    """gunicorn and celery run no system checks: the settings themselves stop them."""
    executable = Path(sys.executable).parent / command[0]
    result = subprocess.run(
        [str(executable), *command[1:]],
        env={"PATH": os.environ.get("PATH", ""), **production(tmp_path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3  # gunicorn: "worker failed to boot", so no respawn loop
    output = result.stdout + result.stderr
    assert "configuration error: Set the CONFIGSYNC_ENCRYPTION_KEYS" in output
    assert "Traceback" not in output


def test_production_names_other_missing_secrets(tmp_path: Path) -> None:
    env = production(tmp_path, CONFIGSYNC_ENCRYPTION_KEYS=generate_key())
    del env["DJANGO_SECRET_KEY"]
    result = manage(env, "check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr


def test_production_starts_with_valid_keys(tmp_path: Path) -> None:
    keys = f"{generate_key()},{generate_key()}"
    result = manage(production(tmp_path, CONFIGSYNC_ENCRYPTION_KEYS=keys), "check")
    assert result.returncode == 0, result.stderr
    assert keys.split(",")[0] not in result.stdout + result.stderr


PUBLISHED_KEY = base64.urlsafe_b64encode(b"placeholder-key-replace-me------").rstrip(b"=").decode()
"""The encryption key compose.yaml once shipped as its default: valid base64url, 32 bytes, and
readable by anyone who ever saw the file."""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_SECRET_KEY", "placeholder-node-a-secret-key-change-me"),
        ("DJANGO_SECRET_KEY", "CHANGEME"),
        ("CONFIGSYNC_SYNC_SECRET", "placeholder-sync-secret-change-me"),
        ("CONFIGSYNC_ENCRYPTION_KEYS", PUBLISHED_KEY),
        ("CONFIGSYNC_ENCRYPTION_KEYS", f"{generate_key()},{PUBLISHED_KEY}"),
    ],
    ids=["django-long", "django-changeme", "sync-secret", "key", "second-key"],
)
def test_production_refuses_a_published_placeholder(
    tmp_path: Path, variable: str, value: str
) -> None:
    """A value that says it is a placeholder (an example from compose.yaml, the README) would
    otherwise run a production node on a secret anyone can read."""
    env = production(
        tmp_path,
        CONFIGSYNC_ENCRYPTION_KEYS=generate_key(),
        CONFIGSYNC_PEERS="b=https://b.example",
        CONFIGSYNC_SYNC_SECRET="a-real-sync-secret-0123456789abcdef",
    )
    env[variable] = value
    result = manage(env, "check")
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert variable in result.stderr and "placeholder" in result.stderr
    assert "Traceback" not in result.stderr
    for part in value.split(","):
        assert part not in result.stderr


def test_malformed_key_outside_production_stops_start_up_too(tmp_path: Path) -> None:
    """A node on the local settings with an unusable key would fail on the first secret."""
    env = {
        "DJANGO_SETTINGS_MODULE": "settings.local",
        "CONFIGSYNC_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "CONFIGSYNC_ENCRYPTION_KEYS": f"{generate_key()},short",
    }
    result = manage(env, "check")
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "entry 2" in result.stderr
    assert "Traceback" not in result.stderr and "short" not in result.stderr


def test_local_without_keys_generates_the_dev_key_once(tmp_path: Path) -> None:
    env = {
        "DJANGO_SETTINGS_MODULE": "settings.local",
        "CONFIGSYNC_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
    }
    first = manage(env, "check")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "dev-encryption.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert "configsync.W001" in first.stderr
    assert "generated a development key" in first.stderr
    content = key_file.read_text()
    assert content.strip() not in first.stderr + first.stdout
    second = manage(env, "check")
    assert second.returncode == 0 and "generated a development key" not in second.stderr
    assert key_file.read_text() == content


# --- every entry point, the examples --------------------------------------------------

BIN = Path(sys.executable).parent
ENTRY_POINTS = {
    "manage.py": [sys.executable, str(ROOT / "manage.py"), "check"],
    # Two workers: each used to print the error, and the master then halted with a traceback.
    "gunicorn": [str(BIN / "gunicorn"), "settings.wsgi", "--bind", "127.0.0.1:0", "--workers", "2"],
    "celery-worker": [str(BIN / "celery"), "-A", "settings", "worker", "--loglevel=INFO"],
    "celery-beat": [str(BIN / "celery"), "-A", "settings", "beat", "--loglevel=INFO"],
}


def local(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "settings.local",
        "CONFIGSYNC_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        **extra,
    }


CASES = {
    # Under production settings with nothing set (celery: a 106-line traceback before).
    "production-nothing-set": (
        lambda tmp: {"DJANGO_SETTINGS_MODULE": "settings.production", "CONFIGSYNC_VAR_DIR": tmp},
        "Set the DJANGO_SECRET_KEY environment variable",
    ),
    # A 42-line traceback before.
    "interval-not-a-number": (
        lambda tmp: local(Path(tmp), CONFIGSYNC_SYNC_INTERVAL_SECONDS="abc"),
        "CONFIGSYNC_SYNC_INTERVAL_SECONDS must be a whole number of seconds",
    ),
    # Passed `check`; the worker logged "peers not seeded" every beat.
    "peers-nonsense": (
        lambda tmp: local(Path(tmp), CONFIGSYNC_PEERS="nonsense"),
        "CONFIGSYNC_PEERS: item 1 is not name=base_url",
    ),
}


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", list(CASES))
def test_every_entry_point_stops_with_exactly_one_line(
    tmp_path: Path, entry_point: str, case: str
) -> None:
    make_env, expected = CASES[case]
    result = subprocess.run(
        ENTRY_POINTS[entry_point],
        env={"PATH": os.environ.get("PATH", ""), **make_env(str(tmp_path))},
        cwd=ROOT,  # gunicorn reads gunicorn.conf.py from here
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 3, lines
    assert len(lines) == 1, lines  # no traceback, no second copy, nothing else
    assert lines[0].startswith("configsync: configuration error: ")
    assert expected in lines[0]


def test_production_refuses_a_skewed_test_clock(tmp_path: Path) -> None:
    """``CONFIGSYNC_CLOCK_OFFSET_MS`` is the chaos harness's injectable clock: never production."""
    env = production(
        tmp_path, CONFIGSYNC_ENCRYPTION_KEYS=generate_key(), CONFIGSYNC_CLOCK_OFFSET_MS="5000"
    )
    result = manage(env, "check")
    assert result.returncode == 3, result.stderr
    assert "CONFIGSYNC_CLOCK_OFFSET_MS" in result.stderr and "Traceback" not in result.stderr
    env["CONFIGSYNC_CLOCK_OFFSET_MS"] = "0"
    assert manage(env, "check").returncode == 0
