"""The atheris harnesses under ``fuzz/`` run, briefly, in the default suite: each one for a fixed
number of inputs (its seeds first, then libFuzzer's mutations) in its own process, which exits 0
only when no input crashed it (``make fuzz`` runs them for minutes).

A harness builds its own throwaway node (SQLite and var folder in a temporary folder, no Redis),
so this runs the same on both backends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The atheris harnesses run in child processes on parsers alone: the same in either CI pass
# (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]
HARNESSES = sorted(
    path.stem for path in (ROOT / "fuzz").glob("*.py") if not path.stem.startswith("_")
)
HARNESSES.remove("seeds")
RUNS = {"peer_page": 150, "wire": 150, "signature": 200}
"""Inputs per harness; the default is 300. The slower parsers (HTTP answers go through
``requests``' charset detection; wire and signature answer through the request stack and a
database) get fewer. A harness costs about 3 s of CPU to start (Django, instrumentation, for two
of them a migration) and under 3 s to run: all of them about 35 s of CPU."""


def test_every_parser_named_by_the_issue_has_a_harness() -> None:
    assert set(HARNESSES) >= {
        "wire",
        "peer_page",
        "cursor",
        "signature",
        "envelope",
        "snapshot",
        "envfile",
        "bucket",
        "external_rows",
    }
    for name in HARNESSES:
        assert any((ROOT / "fuzz" / "corpus" / name).iterdir()), f"no seeds for {name}"


@pytest.mark.parametrize("harness", HARNESSES)
def test_a_harness_survives_a_short_run(harness: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    runs = RUNS.get(harness, 300)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "fuzz" / f"{harness}.py"),
            f"-atheris_runs={runs}",
            "-timeout=20",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    tail = (done.stdout + done.stderr)[-3000:]
    assert done.returncode == 0, tail
    assert f"Done {runs} " in done.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
