"""``make run`` as a new user runs it: it prints where the admin is and how to create the first
superuser, and the landing page it points to answers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
STAMP = ROOT / ".venv" / ".installed"
START_TIMEOUT_SECONDS = 90.0

# `make run` on a node folder of its own (SQLite, embedded defaults): the same in either CI pass.
pytestmark = [
    pytest.mark.one_pass,
    pytest.mark.skipif(
        not STAMP.exists(), reason="make run needs the repository's .venv (make install)"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (a zombie waiting for its reaper does not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to make, honcho, web, worker and beat (one group); SIGKILL to what lingers."""
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        if group_alive(group):
            os.killpg(group, signal.SIGKILL)
    process.wait(timeout=20)


def test_make_run_prints_the_admin_and_the_first_superuser(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "make-run.log"
    env = {  # a fresh shell: none of the suite's settings
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PORT": str(port),
        "CONFIGSYNC_VAR_DIR": str(tmp_path / "node"),
    }
    with log.open("wb") as out:
        # -o: the installed .venv is taken as up to date (no reinstall inside a test).
        process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", ".venv/.installed", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        landing = None
        while landing is None:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                landing = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.25)
        printed = log.read_text()
        assert f"admin:     http://127.0.0.1:{port}/admin/" in printed
        assert re.search(
            rf"CONFIGSYNC_VAR_DIR={re.escape(str(tmp_path / 'node'))} "
            r"\S*python manage\.py createsuperuser",
            printed,
        ), printed
        assert landing.status_code == 200
        assert 'href="/admin/"' in landing.text
        # One folder per node: its database is in CONFIGSYNC_VAR_DIR, not in the project's var/.
        assert (tmp_path / "node" / "configsync.sqlite3").exists()
    finally:
        stop(process)
