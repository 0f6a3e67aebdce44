"""The broker is chosen on its own: ``CELERY_BROKER_URL`` (RabbitMQ, Redis, the embedded one),
while ``REDIS_URL`` keeps the cache, locks and notifications; a malformed URL is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from settings.environment import BROKER_SCHEMES, ConfigurationError, Environment
from tests.factories import CANARY_SECRET
from tests.settings.test_environment import load_settings

# Child processes with environments of their own: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]

MALFORMED = [
    "nonsense",
    "rabbitmq.example:5672",
    f"ftp://u:{CANARY_SECRET}@h.example",
    f"http://guest:{CANARY_SECRET}@127.0.0.1:5672//",
    "amqp://",
    f"amqp://guest:{CANARY_SECRET}@h.example:port//",
    "redis://h.example:6379/zero",
    "configsync-fs://somewhere",
    "configsync-fs:///var/broker",
    "memory://h.example",
]


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_broker_url_stops_with_one_line_naming_it(tmp_path: Path, value: str) -> None:
    status, output = load_settings("local", tmp_path, CELERY_BROKER_URL=value)
    assert status == 3, output
    assert output.count("\n") == 1
    assert output.startswith("configsync: configuration error: CELERY_BROKER_URL must be a URL")
    assert "amqp" in output and "configsync-fs" in output  # says which schemes are accepted
    assert CANARY_SECRET not in output and "Traceback" not in output


@pytest.mark.parametrize(
    "value",
    [
        "amqp://guest:guest@127.0.0.1:5672//",
        "amqps://user:pass@rabbit.example:5671/configsync-a",
        "pyamqp://127.0.0.1",
        "redis://127.0.0.1:6379/2",
        "rediss://:pass@redis.example:6380/0",
        "configsync-fs://",
        "memory://",
    ],
)
def test_every_supported_scheme_is_accepted(value: str) -> None:
    assert Environment({"CELERY_BROKER_URL": value}).broker_url("CELERY_BROKER_URL") == value
    assert value.partition(":")[0] in BROKER_SCHEMES


def test_blank_means_unset() -> None:
    env = Environment({"CELERY_BROKER_URL": " "})
    assert env.broker_url("CELERY_BROKER_URL") == ""
    with pytest.raises(ConfigurationError, match=r"^CELERY_BROKER_URL must be a URL"):
        Environment({"CELERY_BROKER_URL": "amqp:/h"}).broker_url("CELERY_BROKER_URL")


SCRIPT = (
    "from django.conf import settings as s\n"
    "print(s.CELERY_BROKER_URL)\n"
    "print(sorted(s.CELERY_BROKER_TRANSPORT_OPTIONS))\n"
    "print(s.CACHES['default']['BACKEND'].rsplit('.', 1)[1])\n"
    "print(s.REDIS_URL)\n"
)


def settings_of(tmp_path: Path, **extra: str) -> list[str]:
    """What a new process's settings say of the broker, its options, the cache and REDIS_URL."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "settings.local",
        "CONFIGSYNC_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        **extra,
    }
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup()\n{SCRIPT}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_rabbitmq_is_the_broker_while_redis_keeps_the_cache(tmp_path: Path) -> None:
    broker = "amqp://guest:guest@127.0.0.1:5672/configsync-a"
    redis = "redis://127.0.0.1:6379/5"
    assert settings_of(tmp_path, CELERY_BROKER_URL=broker, REDIS_URL=redis) == [
        broker,
        "[]",
        "RedisCache",
        redis,
    ]


def test_without_a_broker_url_redis_is_the_broker_else_the_embedded_one(tmp_path: Path) -> None:
    redis = "redis://127.0.0.1:6379/5"
    assert settings_of(tmp_path, REDIS_URL=redis) == [
        redis,
        "['visibility_timeout']",
        "RedisCache",
        redis,
    ]
    embedded = settings_of(tmp_path)
    assert embedded[0] == "configsync-fs://"
    assert embedded[1] == str(
        [
            "control_folder",
            "data_folder_in",
            "data_folder_out",
            "polling_interval",
            "store_processed",
        ]
    )
    assert embedded[2] == "LocMemCache"


def test_the_embedded_broker_can_be_named_explicitly_beside_redis(tmp_path: Path) -> None:
    """``CELERY_BROKER_URL=configsync-fs://`` with Redis for the cache: folders in VAR_DIR."""
    lines = settings_of(
        tmp_path, CELERY_BROKER_URL="configsync-fs://", REDIS_URL="redis://127.0.0.1:6379/5"
    )
    assert lines[0] == "configsync-fs://" and "data_folder_in" in lines[1]
    assert lines[2] == "RedisCache"
    assert (tmp_path / "var" / "celery" / "broker").is_dir()
