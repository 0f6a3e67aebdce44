"""Fixtures of the parser fuzzers: this process is node ``LOCAL`` signing with ``SECRET``, and
a valid batch of every replicated model to mutate (``tests.support.fuzz``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from configsync.replication.transports.http import peer_sessions_close
from tests.support.fuzz import remote_batch
from tests.support.push import push_flags_clear
from tests.support.replication import use_replication_settings


@pytest.fixture(autouse=True)
def _replication_settings(settings: Any) -> Iterator[None]:
    use_replication_settings(settings)
    push_flags_clear()
    yield
    peer_sessions_close()
    push_flags_clear()


@pytest.fixture
def valid_batch(db: None, canary: str) -> list[dict[str, Any]]:
    return remote_batch(canary)
