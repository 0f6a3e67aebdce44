"""Every variable the settings read is validated at start-up, in one place (environment.py).

Each malformed value stops the settings import — which is what manage.py, gunicorn and celery
worker and beat all do first (tests/settings/test_startup.py runs those as real processes) —
with one line naming the variable and what is wrong, exit status 3, no traceback and never the
value itself. The matrix below imports the settings modules afresh in this process (with the
environment replaced for the duration), which is what a new process does, fifty times cheaper.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

import pytest

from configsync.crypto.keyring import generate_key
from settings.environment import ConfigurationError, Environment
from tests.factories import CANARY_SECRET

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MODULES = ("settings.base", "settings.local", "settings.production", "settings.test")


@contextmanager
def exactly_this_environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_settings(module: str, tmp_path: Path, **extra: str) -> tuple[int, str]:
    """Import ``settings.<module>`` afresh under a clean environment: (exit status, stderr)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CONFIGSYNC_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
    }
    if module == "production":
        env.update(
            DJANGO_SECRET_KEY="production-test-only-not-a-secret",
            DJANGO_ALLOWED_HOSTS="configsync.example",
            CONFIGSYNC_ENCRYPTION_KEYS=generate_key(),
        )
    env.update(extra)
    package = sys.modules["settings"]
    saved = {name: sys.modules.pop(name) for name in SETTINGS_MODULES if name in sys.modules}
    stderr = io.StringIO()
    status = 0
    try:
        with exactly_this_environment(env), redirect_stderr(stderr):
            importlib.import_module(f"settings.{module}")
    except SystemExit as exc:
        status = int(exc.code or 0)
    finally:
        for name in SETTINGS_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        for name, loaded in saved.items():
            setattr(package, name.rpartition(".")[2], loaded)
    return status, stderr.getvalue()


MALFORMED = [
    # (settings module, variable, value, what the line must say)
    ("local", "DJANGO_DEBUG", "maybe", "DJANGO_DEBUG must be true or false"),
    ("local", "DJANGO_SECRET_KEY", "", "DJANGO_SECRET_KEY is empty"),
    ("production", "DJANGO_SECRET_KEY", " ", "DJANGO_SECRET_KEY is empty"),
    ("production", "DJANGO_SECRET_KEY", "django-insecure-x", "DJANGO_SECRET_KEY is a development"),
    ("production", "DJANGO_ALLOWED_HOSTS", "", "DJANGO_ALLOWED_HOSTS is empty"),
    ("local", "DJANGO_ALLOWED_HOSTS", "a.example,,b.example", "DJANGO_ALLOWED_HOSTS: item 2 is"),
    ("local", "DJANGO_ALLOWED_HOSTS", "https://a.example", "DJANGO_ALLOWED_HOSTS lists host"),
    ("local", "DJANGO_LOG_LEVEL", "LOUD", "DJANGO_LOG_LEVEL must be one of"),
    ("production", "DJANGO_SESSION_COOKIE_SECURE", "sometimes", "DJANGO_SESSION_COOKIE_SECURE"),
    ("local", "DATABASE_URL", "nonsense", "DATABASE_URL must be postgres://"),
    ("local", "DATABASE_URL", f"postgres://u:{CANARY_SECRET}@h:abc/db", "DATABASE_URL must be"),
    ("local", "DATABASE_URL", "mysql://u@h/db", "DATABASE_URL must be postgres://"),
    ("local", "DATABASE_URL", "sqlite://", "DATABASE_URL must be"),
    ("test", "TEST_DATABASE_URL", "nonsense", "TEST_DATABASE_URL must be postgres://"),
    ("local", "EXTERNAL_DATABASE_URL", "nonsense", "EXTERNAL_DATABASE_URL must be"),
    ("local", "REDIS_URL", f"http://u:{CANARY_SECRET}@h", "REDIS_URL must be redis://"),
    ("local", "REDIS_URL", "redis://h:abc/0", "REDIS_URL must be redis://"),
    ("local", "REDIS_URL", "redis://h:6379/x", "REDIS_URL must be redis://"),
    ("local", "CELERY_BROKER_URL", "nonsense", "CELERY_BROKER_URL must be a URL"),
    ("local", "CONFIGSYNC_VAR_DIR", "/proc/configsync", "CONFIGSYNC_VAR_DIR: cannot create"),
    ("local", "CONFIGSYNC_NODE_ID", "a b", "CONFIGSYNC_NODE_ID must be 1-64"),
    ("local", "CONFIGSYNC_ENCRYPTION_KEYS", ",", "CONFIGSYNC_ENCRYPTION_KEYS: item 1 is empty"),
    ("local", "CONFIGSYNC_ENCRYPTION_KEYS", "", "CONFIGSYNC_ENCRYPTION_KEYS is empty"),
    ("local", "CONFIGSYNC_ENCRYPTION_KEYS", CANARY_SECRET, "entry 1 is malformed"),
    ("local", "CONFIGSYNC_PEERS", "nonsense", "CONFIGSYNC_PEERS: item 1 is not name=base_url"),
    (
        "local",
        "CONFIGSYNC_PEERS",
        "a=http://a.example,b=http://b.example,a=http://c.example",
        "CONFIGSYNC_PEERS: items 1 and 3 have the same name",
    ),
    (
        "local",
        "CONFIGSYNC_PEERS",
        "a=http://a.example/,b=http://A.example",
        "CONFIGSYNC_PEERS: items 1 and 2 have the same base URL",
    ),
    ("local", "CONFIGSYNC_PEERS", f"a=ftp://u:{CANARY_SECRET}@h", "item 1 needs a slug name"),
    ("local", "CONFIGSYNC_PEERS", f"{'n' * 65}=http://h.example", "item 1 is too long"),
    ("local", "CONFIGSYNC_SYNC_INTERVAL_SECONDS", "abc", "must be a whole number of seconds"),
    ("local", "CONFIGSYNC_SYNC_INTERVAL_SECONDS", "-5", "from 0 to 86400"),
    ("local", "CONFIGSYNC_SYNC_INTERVAL_SECONDS", "1e3", "must be a whole number of seconds"),
    ("local", "CONFIGSYNC_DEPLOYMENT_MODE", "CLOUD", "CONFIGSYNC_DEPLOYMENT_MODE must be one of"),
    ("local", "CONFIGSYNC_DEPLOYMENT_MODE", "LOCAL_R2", "needs CONFIGSYNC_R2_ENDPOINT_URL"),
    ("local", "CONFIGSYNC_R2_BUCKET", "bucket", "but CONFIGSYNC_R2_ENDPOINT_URL is not"),
    ("local", "CONFIGSYNC_R2_ENDPOINT_URL", "r2.example", "CONFIGSYNC_R2_ENDPOINT_URL must be"),
    ("local", "CONFIGSYNC_ENV_MANAGE", "some", "CONFIGSYNC_ENV_MANAGE must be all"),
    ("local", "CONFIGSYNC_ENV_MANAGE", "prefix:", "CONFIGSYNC_ENV_MANAGE must be all"),
    ("local", "CONFIGSYNC_ENV_STRIP_PREFIX", "maybe", "CONFIGSYNC_ENV_STRIP_PREFIX must be"),
    ("local", "CONFIGSYNC_ENV_SECRET_URL_CREDENTIALS", "2", "CONFIGSYNC_ENV_SECRET_URL_CREDENT"),
    ("local", "CONFIGSYNC_ENV_EXCLUDE", "A_*,", "CONFIGSYNC_ENV_EXCLUDE: item 2 is empty"),
    ("local", "CONFIGSYNC_DATA_CALLBACK_URL", f"ftp://u:{CANARY_SECRET}@h", "must be a URL"),
    ("local", "CONFIGSYNC_PUSH_ON_WRITE", "xyz", "CONFIGSYNC_PUSH_ON_WRITE must be true or"),
    ("local", "CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS", "0", "CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS must"),
    ("local", "CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS", "ten", "CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS must"),
    ("local", "CONFIGSYNC_SYNC_BATCH_SIZE", "0", "CONFIGSYNC_SYNC_BATCH_SIZE must be a whole"),
    ("local", "CONFIGSYNC_SYNC_BATCH_SIZE", "1001", "CONFIGSYNC_SYNC_BATCH_SIZE must be a whole"),
    ("local", "CONFIGSYNC_NATS_MAX_AGE_SECONDS", "-1", "CONFIGSYNC_NATS_MAX_AGE_SECONDS must"),
    ("local", "CONFIGSYNC_NATS_MAX_MSGS", "many", "CONFIGSYNC_NATS_MAX_MSGS must be a whole"),
    ("local", "CONFIGSYNC_SKEW_WARNING_SECONDS", "nan", "CONFIGSYNC_SKEW_WARNING_SECONDS must"),
    ("local", "CONFIGSYNC_SKEW_WARNING_SECONDS", "-1", "CONFIGSYNC_SKEW_WARNING_SECONDS must"),
    ("local", "CONFIGSYNC_SKEW_WARNING_SECONDS", "301", "must not exceed CONFIGSYNC_MAX_CLOCK"),
    ("local", "CONFIGSYNC_THROTTLE_ANON", "fast", "CONFIGSYNC_THROTTLE_ANON must be a rate"),
    ("local", "CONFIGSYNC_THROTTLE_USER", "0/min", "CONFIGSYNC_THROTTLE_USER must be a rate"),
    ("local", "CONFIGSYNC_TEST_MERGE_RULE", "lww", "CONFIGSYNC_TEST_MERGE_RULE must be one of"),
    ("test", "CONFIGSYNC_TEST_MERGE_RULE", "lww", "CONFIGSYNC_TEST_MERGE_RULE must be one of"),
    ("production", "CONFIGSYNC_TEST_MERGE_RULE", "broken", "is a test-only switch: unset it"),
]


@pytest.mark.parametrize(
    ("module", "variable", "value", "expected"),
    MALFORMED,
    ids=[f"{m}-{var}-{i}" for i, (m, var, _, _) in enumerate(MALFORMED)],
)
def test_a_malformed_variable_stops_with_one_line_naming_it(
    tmp_path: Path, module: str, variable: str, value: str, expected: str
) -> None:
    status, output = load_settings(module, tmp_path, **{variable: value})
    assert status == 3, output
    assert output.count("\n") == 1 and output.startswith("configsync: configuration error: ")
    assert variable in output and expected in output, output
    assert "Traceback" not in output
    assert CANARY_SECRET not in output


def test_production_refuses_an_empty_sync_secret_when_peers_are_set(tmp_path: Path) -> None:
    status, output = load_settings(
        "production",
        tmp_path,
        CONFIGSYNC_PEERS="cloud=https://cfg.example.com",
        CONFIGSYNC_SYNC_SECRET=" ",
    )
    assert (status, output) == (
        3,
        "configsync: configuration error: CONFIGSYNC_SYNC_SECRET is empty: set a value or "
        "remove the variable\n",
    )


def test_blank_optional_variables_mean_unset(tmp_path: Path) -> None:
    """``NAME=`` is how shells, Compose files and the multi-node harness say "not set"."""
    blank = {
        name: ""
        for name in (
            "DJANGO_DEBUG",
            "REDIS_URL",
            "CONFIGSYNC_ENV_FILE",
            "CONFIGSYNC_DATA_CALLBACK_URL",
            "CONFIGSYNC_SYNC_INTERVAL_SECONDS",
            "CONFIGSYNC_PEERS",
            "CONFIGSYNC_DEPLOYMENT_MODE",
            "CONFIGSYNC_NODE_ID",
            "CONFIGSYNC_R2_BUCKET",
        )
    }
    assert load_settings("local", tmp_path, **blank) == (0, "")


@pytest.mark.parametrize("module", ["local", "production", "test"])
def test_each_settings_module_loads_with_its_defaults(tmp_path: Path, module: str) -> None:
    assert load_settings(module, tmp_path) == (0, "")


def test_valid_values_of_every_variable_are_accepted(tmp_path: Path) -> None:
    script = (
        "from django.conf import settings as s\n"
        "print(s.DEBUG, s.CONFIGSYNC_SYNC_INTERVAL_SECONDS, s.CONFIGSYNC_PUSH_ON_WRITE,"
        " s.CONFIGSYNC_PEERS, s.CONFIGSYNC_DEPLOYMENT_MODE, s.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS,"
        " s.CONFIGSYNC_SKEW_WARNING_SECONDS, s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'],"
        " s.ALLOWED_HOSTS, s.LOG_LEVEL, s.CELERY_BROKER_URL, s.CONFIGSYNC_TEST_MERGE_RULE)\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "settings.local",
        "CONFIGSYNC_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "DJANGO_DEBUG": "Off",
        "DJANGO_ALLOWED_HOSTS": " a.example , b.example ",
        "DJANGO_LOG_LEVEL": "warning",
        "CONFIGSYNC_SYNC_INTERVAL_SECONDS": "0",
        "CONFIGSYNC_PUSH_ON_WRITE": "no",
        "CONFIGSYNC_PEERS": "cloud=https://cfg.example.com/,edge=http://10.0.0.2:8000",
        "CONFIGSYNC_DEPLOYMENT_MODE": "LOCAL_EXTERNAL",
        "CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS": "600",
        "CONFIGSYNC_SKEW_WARNING_SECONDS": "1.5",
        "CONFIGSYNC_THROTTLE_ANON": "10/s",
        "CONFIGSYNC_THROTTLE_USER": "100/hour",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "CONFIGSYNC_ENCRYPTION_KEYS": f"{generate_key()},{generate_key()}",
        "CONFIGSYNC_TEST_MERGE_RULE": "broken",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "0",
        "False",
        "['cloud=https://cfg.example.com/',",
        "'edge=http://10.0.0.2:8000']",
        "LOCAL_EXTERNAL",
        "600",
        "1.5",
        "{'anon':",
        "'10/s',",
        "'user':",
        "'100/hour'}",
        "['a.example',",
        "'b.example']",
        "WARNING",
        "redis://127.0.0.1:6379/3",
        "broken",
    ]


# --- the readers themselves (no process needed) ---------------------------------------------


def test_bool_accepts_only_the_usual_spellings() -> None:
    env = Environment({"A": "YES", "B": "0", "C": "maybe", "D": ""})
    assert env.bool("A") is True and env.bool("B") is False
    assert env.bool("MISSING", default=True) is True
    assert env.bool("D", default=True) is True  # blank: unset
    with pytest.raises(ConfigurationError, match=r"^C must be true or false"):
        env.bool("C")
    with pytest.raises(ConfigurationError, match=r"^D is empty"):
        env.bool("D")  # required


def test_int_and_float_bounds() -> None:
    env = Environment({"N": " 42 ", "BIG": "99", "F": "inf", "G": "2.5"})
    assert env.int("N", minimum=0, maximum=50) == 42
    with pytest.raises(ConfigurationError, match="from 0 to 50"):
        env.int("BIG", minimum=0, maximum=50)
    with pytest.raises(ConfigurationError, match="finite"):
        env.float("F")
    assert math.isclose(env.float("G", minimum=0, maximum=3), 2.5)


def test_missing_required_variable_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"^Set the X environment variable$"):
        Environment({}).str("X")


def test_readers_django_environ_offers_raise_our_error_naming_the_variable() -> None:
    """A reader settings/*.py might take from django-environ still fails with one line."""
    env = Environment({"J": "{not json"})
    with pytest.raises(ConfigurationError, match=r"^J is malformed$"):
        env.json("J")
