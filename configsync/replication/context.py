"""Whether the current thread is applying a change received from a peer.

While it is, the model-signal receivers do not stamp a new local version: the change already has
its timestamp, origin and version vector, and re-stamping it would make every applied change look
like a new local write (and bounce between nodes forever).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_applying_remote: ContextVar[bool] = ContextVar("configsync_applying_remote", default=False)


def is_applying_remote() -> bool:
    """True inside :func:`applying_remote`."""
    return _applying_remote.get()


@contextmanager
def applying_remote() -> Iterator[None]:
    """Mark model writes in the block as the application of a remote change."""
    token = _applying_remote.set(True)
    try:
        yield
    finally:
        _applying_remote.reset(token)
