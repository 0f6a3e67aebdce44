"""Clock skew and restores, with real node processes over HTTP (see the ``multinode`` package).

**Clock.** Node a runs under libfaketime (Debian package ``faketime``; ``.ci/run`` installs it),
preloaded into every process of the node with ``FAKETIME=+1200s``: its clock runs twenty minutes
ahead of b's, beyond the allowed skew (60 s) and even the signature window (300 s), so each
refuses the other's requests — and still learns the other's clock from the refusal (HTTP
``Date``). Then a's clock is "corrected" (its processes restart without libfaketime) while its
database keeps the HLC it issued ahead. Both phases must be loud on a (status, strict health,
one ERROR per cycle naming the recovery) and visible on b (the peer's skew).

**Restore.** Node a's database is backed up (SQLite online backup, or ``CREATE DATABASE ...
TEMPLATE``), a writes records that reach b, then a's backup is restored: the replication log
makes both directions start over, so a gets its records back (b would never send them: b
received them from a) and a's new writes reach b although its feed restarted below b's cursor.

Waits poll with generous deadlines; nothing asserts how long anything took.
"""

from __future__ import annotations

import glob
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from multinode import PYTHON, Cluster, Node, pg_admin, unique_key, wait_until
from tests.support.multinode import last_run_id, run_cluster, wait_cycles

pytestmark = pytest.mark.multinode

CONVERGE = 120.0
AHEAD_S = 1200
LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
FAKETIME_ENV = {
    "LD_PRELOAD": LIBFAKETIME[0] if LIBFAKETIME else "",
    "FAKETIME": f"+{AHEAD_S}s",
    # The monotonic clock is shifted by the same constant (durations unchanged): with it left
    # alone, libfaketime 0.9.10 makes Python's time.sleep fail with EINVAL.
    "FAKETIME_DONT_FAKE_MONOTONIC": "0",
}


def _peer(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in status["peers"] if p["name"] == name)


def _faketime_shifts_python_time() -> bool:
    """Whether libfaketime really moves ``time.time_ns()`` in a child Python process here."""
    if not LIBFAKETIME:
        return False
    code = "import time; time.sleep(0.01); print(time.time_ns() // 10**9)"
    env = {**os.environ, **FAKETIME_ENV}
    shifted = int(
        subprocess.run(
            [PYTHON, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    plain = int(
        subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    return AHEAD_S - 5 <= shifted - plain <= AHEAD_S + 5


@pytest.fixture
def skewed_pair(tmp_path: Path) -> Iterator[Cluster]:
    """Nodes a (clock 20 minutes ahead, libfaketime) and b."""
    if not _faketime_shifts_python_time():
        pytest.skip("libfaketime missing or ineffective: apt-get install faketime (.ci/run does)")
    cluster = Cluster(tmp_path, names=["a", "b"], node_env={"a": FAKETIME_ENV})
    yield from run_cluster(cluster)


def test_a_clock_ahead_then_set_back_is_loud_until_it_is_within_bounds(
    skewed_pair: Cluster,
) -> None:
    a, b = skewed_pair["a"], skewed_pair["b"]
    a.cli("set", unique_key("EARLY"), "stamped-ahead", check=True)

    # Phase 1: a's physical clock is 20 minutes ahead. Its peer tells it, every cycle, even
    # while refusing its requests (stale signatures).
    def a_out_of_bounds() -> dict[str, Any] | None:
        status = a.sync_status()
        skew = _peer(status, "b")["clock_skew_ms"]
        ok = status["clock"]["state"] == "out_of_bounds" and skew is not None
        return status if ok and skew < -(AHEAD_S - 30) * 1000 else None

    status = wait_until(a_out_of_bounds, timeout=CONVERGE, what="a learns its clock is ahead")
    assert status["warnings"][0].startswith("CLOCK OUT OF BOUNDS")
    assert "ahead of peer b's" in status["warnings"][0]
    assert "Recovery: Fix this machine's clock" in status["warnings"][0]
    assert requests.get(f"{a.base_url}/api/v1/health", timeout=15).json()["status"] == "degraded"
    assert requests.get(f"{a.base_url}/api/v1/health?strict=1", timeout=15).status_code == 503
    wait_until(
        lambda: "CLOCK OUT OF BOUNDS (sync with b)" in a.log_path("celery").read_text(),
        timeout=CONVERGE,
        what="one ERROR per cycle in a's worker log",
    )
    # b sees a's skew too, and says whose changes it holds.
    on_b = wait_until(
        lambda: (p := _peer(b.sync_status(), "a"))["clock_state"] == "out_of_bounds" and p,
        timeout=CONVERGE,
        what="b sees a's clock ahead",
    )
    assert on_b["clock_skew_ms"] > (AHEAD_S - 30) * 1000

    # Phase 2: a's clock is corrected; its stored HLC still runs ahead, and it says so.
    a.stop()
    for name in FAKETIME_ENV:
        a.env.pop(name)
    a.start()
    late = unique_key("LATE")
    assert a.cli("set", late, "after-the-fix").returncode == 0  # writes are never refused

    def a_stored_clock_ahead() -> dict[str, Any] | None:
        status = a.sync_status()
        skew = _peer(status, "b")["clock_skew_ms"]
        fixed = skew is not None and abs(skew) < 10_000  # measured again, after the fix
        if fixed and status["clock"]["state"] == "out_of_bounds":
            return status
        raise AssertionError(f"skew {skew}, clock {status['clock']}")

    status = wait_until(a_stored_clock_ahead, timeout=CONVERGE, what="a: stored clock ahead")
    assert status["clock"]["hlc_ahead_ms"] > 60_000
    assert "ahead of its physical clock" in status["warnings"][0]
    assert "falls back within the bound by itself in about" in status["clock"]["recovery"]
    assert requests.get(f"{a.base_url}/api/v1/health?strict=1", timeout=15).status_code == 503
    cli = a.cli("status", check=True).stdout
    assert cli.startswith("WARNING: CLOCK OUT OF BOUNDS")
    [(hlc,)] = a.sql("SELECT hlc FROM configsync_replicatedrecord WHERE natural_key = %s", [late])
    wall = int(str(hlc).split(":")[0])
    # The HLC stayed monotonic: the write made after the fix is stamped ahead of real time.
    assert wall > time.time_ns() // 1_000_000 + 60_000


# --- restore ------------------------------------------------------------------------------------


def _backup(node: Node, to: Path) -> str:
    """Copy a stopped node's database; return what ``_restore`` needs."""
    if node.database_url.startswith("sqlite"):
        source = urlsplit(node.database_url).path
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(to)) as dst:
            src.backup(dst)
        return str(to)
    name = urlsplit(node.database_url).path.lstrip("/")
    backup = f"{name}_backup"
    with pg_admin(node.database_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{backup}"')
        conn.execute(f'CREATE DATABASE "{backup}" TEMPLATE "{name}"')
    return backup


def _restore(node: Node, backup: str) -> None:
    if node.database_url.startswith("sqlite"):
        target = Path(urlsplit(node.database_url).path)
        for stale in (Path(f"{target}-wal"), Path(f"{target}-shm")):
            stale.unlink(missing_ok=True)
        with closing(sqlite3.connect(backup)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        return
    name = urlsplit(node.database_url).path.lstrip("/")
    with pg_admin(node.database_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{backup}"')
        conn.execute(f'DROP DATABASE IF EXISTS "{backup}"')


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    yield from run_cluster(Cluster(tmp_path, names=["a", "b"]))


def test_a_node_restored_from_a_backup_gets_its_records_back(pair: Cluster, tmp_path: Path) -> None:
    a, b = pair["a"], pair["b"]
    before, lost, after = unique_key("BEFORE"), unique_key("LOST"), unique_key("AFTER")
    a.cli("set", before, "1", check=True)
    wait_until(lambda: b.config_value(before) == "1", timeout=CONVERGE, what="first sync")

    a.stop()
    backup = _backup(a, tmp_path / "a-backup.sqlite3")
    a.start()
    for n in (1, 2):
        a.cli("set", f"{lost}_{n}", "written-after-the-backup", check=True)
    for n in (1, 2):
        wait_until(lambda n=n: b.config_value(f"{lost}_{n}"), timeout=CONVERGE, what="b has it")
    held_by_b = last_run_id(b)
    [(last_lost,)] = a.sql(
        "SELECT MAX(seq) FROM configsync_replicatedrecord WHERE natural_key LIKE %s", [f"{lost}%"]
    )

    def pushed_and_acknowledged() -> bool:  # a's checkpoint covers them (a stop lets it finish)
        [(cursor,)] = a.sql("SELECT cursor FROM configsync_peercheckpoint WHERE direction='push'")
        return int(str(cursor).rsplit(".", 1)[-1] or 0) >= int(last_lost)

    wait_until(pushed_and_acknowledged, timeout=CONVERGE, what="a's push checkpoint moved on")
    # The restore comes after a cycle of b with a, which records on a that b's push moved past
    # them. Restored before either node ran a full cycle since b received them, a does not get
    # them back: the sessions still match and b's push leaves out what a sent it (the echo rule).
    wait_cycles(b, "a", after=held_by_b, count=1, timeout=CONVERGE)

    a.stop()
    _restore(a, backup)
    assert a.config_value(f"{lost}_1") is None  # really restored: the records are gone
    a.start()

    for n in (1, 2):
        wait_until(
            lambda n=n: a.config_value(f"{lost}_{n}") == "written-after-the-backup",
            timeout=CONVERGE,
            what=f"a gets {lost}_{n} back",
        )
    # Its feed restarted below b's pull cursor: new writes must still reach b.
    for n in (1, 2, 3):
        a.cli("set", f"{after}_{n}", "new", check=True)
    for n in (1, 2, 3):
        wait_until(lambda n=n: b.config_value(f"{after}_{n}") == "new", timeout=CONVERGE)

    def in_sync() -> bool:
        diff = json.loads(a.cli("diff", "--peer", "b", "--json", check=True).stdout)
        return bool(diff["in_sync"])

    wait_until(in_sync, timeout=CONVERGE, what="a and b hold the same versions")
    assert "starts over from the beginning" in a.logs() + b.logs()
