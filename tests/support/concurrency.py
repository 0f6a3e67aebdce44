"""Running test code in several threads at once, each with its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


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
