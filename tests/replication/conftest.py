"""Fixtures of the replication tests: this process is node ``LOCAL`` signing with ``SECRET``.

The helpers (node names, stamps, remote changes) live in :mod:`tests.support.replication`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from configsync.replication.transports.http import peer_sessions_close
from tests.support.push import push_flags_clear
from tests.support.replication import use_replication_settings


@pytest.fixture(autouse=True)
def _replication_settings(settings: Any) -> None:
    use_replication_settings(settings)


@pytest.fixture(autouse=True)
def _no_kept_alive_connection_outlives_the_test() -> Iterator[None]:
    """Close the transports' kept-alive sessions after each test (the live server's thread
    serving one keeps its database connection, which the test database's teardown refuses) and
    lower the push flags it raised (the next test's peer may get the same id)."""
    push_flags_clear()
    yield
    peer_sessions_close()
    push_flags_clear()
