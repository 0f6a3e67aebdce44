"""Named cross-process locks: Redis when ``REDIS_URL`` is set, ``fcntl`` files under var/ otherwise.

``named_lock(name, timeout=...)`` is a context manager yielding ``True`` when acquired; with
``blocking=False`` it yields ``False`` at once if another process holds the lock. The file lock
is released by the kernel when its holder dies. The Redis lock is a lease of
:data:`LEASE_SECONDS` (or ``timeout``, when shorter) that a thread of the holder renews while the
``with`` block runs, for at most ``timeout`` seconds in all: a killed holder (``kill -9`` of a
worker mid-cycle) frees the lock within one lease, a live holder keeps it for as long as it
needs up to ``timeout``, and a hung one loses it after ``timeout`` as before. (A plain expiry of
``timeout`` made a killed worker's peer wait up to ten minutes for its next cycle: found by the
chaos harness, ``tests/chaos``.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from configsync.conf import app_settings

_clients: dict[tuple[int, str], Any] = {}

LEASE_SECONDS = 15.0
"""How long a Redis lock outlives its holder's last renewal (renewed every third of it)."""


class _Renewal:
    """Renews a held Redis lock every third of its lease until stopped, the lock is lost, or
    ``total`` seconds have passed since it was taken."""

    def __init__(self, lock: Any, *, lease: float, total: float) -> None:
        self._lock = lock
        self._lease = lease
        self._until = time.monotonic() + total
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="configsync-lock-renew", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import redis

        while not self._stopped.wait(self._lease / 3):
            left = self._until - time.monotonic()
            if left <= 0:
                return
            try:
                # The new expiry never goes past the holder's total: a hung holder still loses it.
                self._lock.extend(min(self._lease, left), replace_ttl=True)
            except (redis.exceptions.LockError, redis.exceptions.RedisError):
                return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


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
        lease = min(float(timeout), LEASE_SECONDS)
        lock = client.lock(
            f"configsync:lock:{name}",
            timeout=lease,
            blocking_timeout=wait if blocking else 0,
            thread_local=False,  # the renewal thread uses the holder's token
        )
        acquired = bool(lock.acquire(blocking=blocking))
        renewal = (
            _Renewal(lock, lease=lease, total=float(timeout))
            if acquired and timeout > lease
            else None
        )
        try:
            yield acquired
        finally:
            if renewal is not None:
                renewal.stop()
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
