"""The database transport's kit for the contract suite (see ``tests.support.kits``)."""

from __future__ import annotations

import pytest

from tests.support.kits import TransportKit


@pytest.fixture
def database_kit() -> TransportKit:
    pytest.skip("the database transport is not built yet")
