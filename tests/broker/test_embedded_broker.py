"""The embedded broker (no ``REDIS_URL``) under a fast stream from several producer processes.

A real Celery worker (the project's app, thread pool as in the multi-node harness) consumes
messages published concurrently by separate producer processes. Every message must be
consumed exactly once and the worker must still be running: kombu's stock filesystem
transport hands the reader files still being written (kombu issue #1551) and the worker dies
with ``JSONDecodeError``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
PRODUCERS = 4
PER_PRODUCER = 150
TOTAL = PRODUCERS * PER_PRODUCER

# Its own environment (embedded defaults, SQLite under its var/): the same in either CI pass.
pytestmark = [pytest.mark.multinode, pytest.mark.one_pass]


def embedded_env(var_dir: Path) -> dict[str, str]:
    """The environment of a node on the embedded defaults: no Redis, SQLite under its var/."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "TEST_DATABASE_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="settings.test",
        CONFIGSYNC_VAR_DIR=str(var_dir),
        TEST_DATABASE_URL=f"sqlite:///{var_dir}/db.sqlite3",
        PYTHONPATH=str(ROOT),
    )
    return env


def read_numbers(path: Path) -> Counter[int]:
    if not path.exists():
        return Counter()
    return Counter(int(line) for line in path.read_text().splitlines() if line)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, dict[str, str]]]:
    env = embedded_env(tmp_path / "var")
    log = tmp_path / "worker.log"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(CELERY, "-A", "settings", "worker", "--pool=threads", "--concurrency=2"),
                *("--include=tests.broker.tasks", "--loglevel=INFO"),
            ],
            cwd=tmp_path,  # not the repository: nothing may be written relative to the cwd
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "ready." not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.2)
        yield process, log, env
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_worker_consumes_a_concurrent_stream_exactly_once_and_survives(
    tmp_path: Path, worker: tuple[subprocess.Popen[bytes], Path, dict[str, str]]
) -> None:
    process, log, env = worker
    output = tmp_path / "consumed.txt"
    producers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.broker.producer", "task"),
                *(str(index * PER_PRODUCER), str(PER_PRODUCER), str(output)),
            ],
            cwd=tmp_path,
            env=env,
        )
        for index in range(PRODUCERS)
    ]
    for producer in producers:
        assert producer.wait(timeout=300) == 0

    deadline = time.monotonic() + 300
    while sum(read_numbers(output).values()) < TOTAL and process.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)

    text = log.read_text(errors="replace")
    assert "transport:   configsync-fs://" in text  # the embedded defaults chose configsync.broker
    assert process.poll() is None, f"the worker exited:\n{text[-3000:]}"
    assert "Unrecoverable error" not in text and "JSONDecodeError" not in text, text[-3000:]
    consumed = read_numbers(output)
    assert set(consumed) == set(range(TOTAL)), (
        f"missing: {sorted(set(range(TOTAL)) - set(consumed))[:20]}"
    )
    assert [n for n, times in consumed.items() if times != 1] == []
    # Nothing written relative to the working directory (kombu's default control folder).
    assert not (tmp_path / "control").exists()
    assert not (ROOT / "control").exists()
