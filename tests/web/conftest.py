"""A node served as in production (gunicorn, ``settings.production``), shared by this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.production_server import ProductionServer, production_server


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServer]:
    with production_server(tmp_path_factory.mktemp("production")) as running:
        yield running
