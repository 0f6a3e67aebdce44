"""A change made through the API in one process is seen by the lookups of another.

Covers a setting (``get_system_config``) and the rotation of an OpenAI key (``get_ai_config``),
and the API keys whose verification the REST API caches in the same way: a key revoked, or its
reveal scope taken away, by one process is refused by another that had it cached.

Both processes are real (subprocesses under ``settings.test``) and share one file database: a
temporary SQLite file, migrated once for the module, since the in-memory test database of the
pytest process cannot be reached from another process. The writer changes the value through the
REST API (Django's test client, an API key with the write scope); the reader is a worker-like
process that only calls the lookup in a loop and prints every value it sees.

Run with Redis (version key + pub/sub) when ``REDIS_URL`` is set, and with the embedded default
(database version row) always. The wait is a generous deadline for correctness; the actual
latency is printed by ``python -m bench lookups``.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.multinode

# The processes share a SQLite file in either CI pass: the embedded variant (no Redis) is the same
# in both, so it runs in the first only; the Redis variant needs REDIS_URL (the first pass).
BACKENDS = [pytest.param("embedded", marks=pytest.mark.one_pass), "redis"]

READER = """
import sys, time, django
django.setup()
from configsync import get_system_config
from providers import get_ai_config

def read():
    if sys.argv[2] == "provider":
        try:
            return get_ai_config(sys.argv[1], "api_key")
        except KeyError:
            return "<missing>"
    return get_system_config(sys.argv[1], default="<missing>")

last = object()
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    value = read()
    if value != last:
        print(value, flush=True)
        last = value
    time.sleep(0.005)
"""

WRITER = """
import json, sys, django
django.setup()
from django.test import Client
from configsync.services.api_keys import api_key_create
from configsync.services.system_config import system_config_set
from providers.services import ai_provider_set
key, value, action, kind = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
if action == "create" and kind == "provider":
    ai_provider_set(name=key, kind="openai", api_key=value)
    sys.exit(0)
if action == "create":
    system_config_set(key=key, value=value)
    sys.exit(0)
_, api_key = api_key_create(name="cross-process-writer", can_write=True)
if kind == "provider":
    url, body = f"/api/v1/configs/ai-providers/{key}/", {"api_key": value}
else:
    url, body = f"/api/v1/configs/system/{key}/", {"value": value}
response = Client(HTTP_HOST="localhost").patch(
    url,
    data=json.dumps(body),
    content_type="application/json",
    HTTP_AUTHORIZATION=f"Api-Key {api_key}",
)
print(response.status_code, flush=True)
sys.exit(0 if response.status_code == 200 else 1)
"""


def _env(database: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TEST_DATABASE_URL")}
    env["DJANGO_SETTINGS_MODULE"] = "settings.test"
    env["TEST_DATABASE_URL"] = f"sqlite:///{database}"
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@pytest.fixture(scope="module")
def shared_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("lookup") / "shared.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=settings.BASE_DIR,
        env=_env(database, ""),
        check=True,
        timeout=120,
    )
    return database


@pytest.fixture
def reader_factory() -> Iterator:
    started: list[subprocess.Popen] = []

    def start(
        database: Path, redis_url: str, key: str, kind: str
    ) -> tuple[subprocess.Popen, queue.Queue]:
        process = subprocess.Popen(
            [sys.executable, "-c", READER, key, kind],
            cwd=settings.BASE_DIR,
            env=_env(database, redis_url),
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        lines: queue.Queue = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.strip())

        threading.Thread(target=pump, daemon=True).start()
        return process, lines

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


def _wait_for(lines: queue.Queue, expected: str, deadline_seconds: float = 15) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if line == expected:
            return seen
    raise AssertionError(f"reader never printed {expected!r}; it printed {seen!r}")


@pytest.mark.parametrize("kind", ["setting", "provider"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_api_change_is_seen_by_another_process(
    backend: str, kind: str, shared_database: Path, reader_factory
) -> None:  # type: ignore[no-untyped-def]
    """A setting changed (or an OpenAI key rotated) through the API, seen by another process."""
    redis_url = os.environ.get("REDIS_URL", "") if backend == "redis" else ""
    if backend == "redis" and not redis_url:
        pytest.skip("REDIS_URL is not set")
    key = f"cross-{backend}-{kind}" if kind == "provider" else f"CROSS_{backend.upper()}"
    env = _env(shared_database, redis_url)

    def write(value: str, action: str) -> None:
        subprocess.run(
            [sys.executable, "-c", WRITER, key, value, action, kind],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            timeout=60,
        )

    write("sk-CANARY-v1", "create")
    _, lines = reader_factory(shared_database, redis_url, key, kind)
    _wait_for(lines, "sk-CANARY-v1", deadline_seconds=60)  # the reader runs and has it cached

    for value in ("sk-CANARY-v2", "sk-CANARY-v3"):
        write(value, "patch")
        seen = _wait_for(lines, value)
        assert "<missing>" not in seen


KEY_SETUP = """
import django
django.setup()
from configsync.services.api_keys import api_key_create
from configsync.services.system_config import system_config_set
system_config_set(key="KEYED", value="visible")
record, key = api_key_create(name="cross-process-reader", can_reveal=True)
print(record.prefix, key, flush=True)
"""

KEY_CALLER = """
import sys, time, django
django.setup()
from django.test import Client
path, key = sys.argv[1], sys.stdin.readline().strip()
client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Api-Key {key}")
last = None
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    status = client.get(path).status_code
    if status != last:
        print(status, flush=True)
        last = status
    time.sleep(0.005)
"""

KEY_CHANGE = """
import sys, django
django.setup()
from configsync.models import ServiceAPIKey
from configsync.services.api_keys import api_key_revoke, api_key_update
prefix, change = sys.argv[1], sys.argv[2]
if change == "revoke":
    api_key_revoke(prefix=prefix)
else:
    record = ServiceAPIKey.objects.get(prefix=prefix)
    api_key_update(prefix=prefix, name=record.name, can_write=record.can_write,
                   can_reveal=False, expiry_date=record.expiry_date, revoked=False)
"""


@pytest.mark.parametrize(
    ("change", "path", "refused"),
    [
        ("revoke", "/api/v1/configs/system/KEYED/", "401"),
        # The audit trail needs the reveal scope and writes nothing when read.
        ("drop-reveal", "/api/v1/audit/?limit=1", "403"),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_api_key_change_is_enforced_by_another_process(
    backend: str, change: str, path: str, refused: str, shared_database: Path
) -> None:
    """The caller process has the key verified and cached; another process revokes it (or
    takes its reveal scope): the caller is refused within the lookup cache's bound."""
    redis_url = os.environ.get("REDIS_URL", "") if backend == "redis" else ""
    if backend == "redis" and not redis_url:
        pytest.skip("REDIS_URL is not set")
    env = _env(shared_database, redis_url)
    setup = subprocess.run(
        [sys.executable, "-c", KEY_SETUP],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    prefix, key = setup.stdout.split()
    caller = subprocess.Popen(
        [sys.executable, "-c", KEY_CALLER, path],
        cwd=settings.BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert caller.stdin is not None and caller.stdout is not None
        caller.stdin.write(key + "\n")
        caller.stdin.close()
        lines: queue.Queue = queue.Queue()
        stdout = caller.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line.strip())

        threading.Thread(target=pump, daemon=True).start()
        _wait_for(lines, "200", deadline_seconds=60)  # verified, and cached from now on
        subprocess.run(
            [sys.executable, "-c", KEY_CHANGE, prefix, change],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            timeout=60,
        )
        seen = _wait_for(lines, refused)
        assert seen == [refused], f"the caller answered {seen!r} after the change"
    finally:
        caller.kill()
        caller.wait(timeout=10)
