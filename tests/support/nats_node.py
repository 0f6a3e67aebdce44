"""Fixtures of the NATS fleet tests (``tests/nats``, ``tests/chaos/test_nats_faults.py``).

``nats_server``: a private nats-server with JetStream and its monitoring endpoint
(``tests.support.nats_server``), one per test module, so a test may restart or kill it and can
count what each client sent. ``nats_databases``: fresh migrated databases for in-process nodes
on the backend the suite runs on (``tests.support.inprocess.NodeDatabases``: SQLite files in a
temporary folder, or PostgreSQL databases beside the suite's, per xdist worker).
``nats_group``: an :class:`~tests.support.inprocess.InProcessNatsGroup` on a replication group
of its own (``g<hex>``: its own stream and bucket), closed after the test.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from tests.support.inprocess import InProcessNatsGroup, NodeDatabases
from tests.support.nats_server import NatsServer


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    with NatsServer(name="fleet", monitor=True) as server:
        yield server


@pytest.fixture(scope="module")
def nats_databases(
    tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any
) -> Iterator[NodeDatabases]:
    base = dict(connections.settings[DEFAULT_DB_ALIAS])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    server = re.sub(r"\W", "_", str(base["NAME"])) if "postgresql" in base["ENGINE"] else "cs"
    with django_db_blocker.unblock():
        databases = NodeDatabases(
            base=base, directory=tmp_path_factory.mktemp("nats"), prefix=f"{server}_nats_{worker}"
        )
        try:
            yield databases
        finally:
            databases.drop_all()


@pytest.fixture
def nats_group(
    nats_server: NatsServer, nats_databases: NodeDatabases, django_db_blocker: Any
) -> Iterator[InProcessNatsGroup]:
    with django_db_blocker.unblock():
        group = InProcessNatsGroup(
            databases=nats_databases, url=nats_server.url, group=f"g{uuid.uuid4().hex[:10]}"
        )
        try:
            yield group
        finally:
            group.close()
