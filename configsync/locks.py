"""Named cross-process locks: Redis when ``REDIS_URL`` is set, ``fcntl`` files under var/ otherwise.

``named_lock(name, timeout=...)`` is a context manager yielding ``True`` when acquired; with
``blocking=False`` it yields ``False`` at once if another process holds the lock. The Redis lock
expires after ``timeout`` seconds so a killed holder cannot wedge the lock forever; the file lock
is released by the kernel when its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from configsync.conf import app_settings

_clients: dict[tuple[int, str], Any] = {}


def _redis_client(url: str) -> Any:
    """One Redis client (its own connection pool, thread-safe) per URL and process: a lock
    taken per push must not open a connection each time."""
    import redis

    key = (os.getpid(), url)  # a forked child opens its own
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.Redis.from_url(url)
    return client


@contextmanager
def named_lock(
    name: str, *, timeout: float = 300, blocking: bool = True, wait: float = 60
) -> Iterator[bool]:
    """Hold the lock ``name`` for the ``with`` block (see the module docstring)."""
    redis_url = getattr(settings, "REDIS_URL", "")
    if redis_url:
        import redis

        client = _redis_client(redis_url)
        lock = client.lock(
            f"configsync:lock:{name}", timeout=timeout, blocking_timeout=wait if blocking else 0
        )
        acquired = bool(lock.acquire(blocking=blocking))
        try:
            yield acquired
        finally:
            if acquired:
                # It may have expired while held; then another holder may already have it.
                with contextlib.suppress(redis.exceptions.LockError):
                    lock.release()
        return

    directory = app_settings.var_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        acquired = False
        deadline = time.monotonic() + (wait if blocking else 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
