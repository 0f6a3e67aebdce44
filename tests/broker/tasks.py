"""A test-only task the broker tests' worker loads with ``--include tests.broker.tasks``."""

from __future__ import annotations

import os

from celery import shared_task


@shared_task(name="tests.broker.record", ignore_result=True)
def record(number: int, path: str, padding: str = "") -> None:
    """Append ``number`` as one line to ``path`` (``O_APPEND``: lines never interleave).

    ``padding`` only makes the message bigger.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{number}\n".encode())
    finally:
        os.close(fd)
