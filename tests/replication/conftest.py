"""Fixtures of the replication tests: this process is node ``LOCAL`` signing with ``SECRET``.

The helpers (node names, stamps, remote changes) live in :mod:`tests.support.replication`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.replication import use_replication_settings


@pytest.fixture(autouse=True)
def _replication_settings(settings: Any) -> None:
    use_replication_settings(settings)
