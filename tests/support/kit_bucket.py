"""The bucket transport's kit for the contract suite (see ``tests.support.kits``)."""

from __future__ import annotations

import pytest

from tests.support.kits import TransportKit


@pytest.fixture
def bucket_kit() -> TransportKit:
    pytest.skip("the bucket transport is not built yet")
