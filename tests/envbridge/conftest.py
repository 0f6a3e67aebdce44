"""Fixtures of the .env bridge tests: a scratch .env file per test."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def env_path(tmp_path: Path) -> Path:
    """Where the test's .env file lives (not created)."""
    return tmp_path / "app.env"


@pytest.fixture
def write_env(env_path: Path) -> Callable[..., Path]:
    """Write ``text`` to the test's .env file; ``age`` sets its mtime that many seconds back
    (negative: ahead), so "which side is newer" never depends on clock granularity."""

    def write(text: str, *, age: float | None = None, mode: int = 0o600) -> Path:
        env_path.write_bytes(text.encode("utf-8"))
        os.chmod(env_path, mode)
        if age is not None:
            stamp = env_path.stat().st_mtime - age
            os.utime(env_path, (stamp, stamp))
        return env_path

    return write
