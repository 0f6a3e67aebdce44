"""Fixtures shared by the whole suite. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.db import connection

from configsync.crypto.keyring import reset_keyring
from configsync.lookup import lookup_cache
from configsync.services.node import node_id_reset_cache
from tests.factories import CANARY_SECRET

__all__ = ["CANARY_SECRET"]


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    """Caches keyed on settings or on database contents never leak between tests."""
    reset_keyring()
    node_id_reset_cache()
    lookup_cache.invalidate_local()
    yield
    reset_keyring()
    node_id_reset_cache()
    lookup_cache.invalidate_local()


@pytest.fixture
def canary() -> str:
    return CANARY_SECRET


@dataclass(frozen=True)
class CliResult:
    """What one ``manage.py configsync`` run printed, and its exit status."""

    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """The value a command prints on purpose comes last, on its own line (the contract)."""
        return self.out.rstrip("\n").split("\n")[-1]


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run ``manage.py configsync *args`` in this process; ``stdin=`` feeds standard input."""

    def run(*args: str, stdin: str | None = None) -> CliResult:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        out = io.StringIO()
        capsys.readouterr()
        try:
            call_command("configsync", *args, stdout=out)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return CliResult(code, out.getvalue(), capsys.readouterr().err)

    return run


def run_threads(
    targets: list[Callable[[], object]], *, timeout: float = 120
) -> list[BaseException]:
    """Run each target in its own thread (own database connection, closed at the end); wait.

    Returns what the targets raised, in no particular order; fails the test if a thread is
    still running after ``timeout`` seconds (a deadline for a hang, not a speed assertion).
    """
    errors: list[BaseException] = []

    def wrap(target: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        return run

    threads = [threading.Thread(target=wrap(target)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    return errors
