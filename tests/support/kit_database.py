"""The database transport's kit for the contract suite (see ``tests.support.kits``).

Each test gets a fresh PostgreSQL database on the tests' server
(``multinode.media.external_database``), named by ``settings.EXTERNAL_DATABASE_URL``: the
transport registers the ``external`` alias from it at run time, as a node whose setting changed
would. Tear-down closes every link, forgets the aliases the kit added (so Django's test cases of
later tests never see them) and drops the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper

from configsync.conf import app_settings
from configsync.replication.external.connection import alias_forget, alias_register
from configsync.replication.transports.base import Transport
from configsync.replication.transports.database import DatabaseTransport
from multinode.cluster import free_port
from multinode.media import external_database
from tests.support.kits import TransportKit

REFUSED_PASSWORD = "sk-CANARY-refused-db-password"


def with_credentials(url: str, *, user: str, password: str, port: int | None = None) -> str:
    """``url`` with another user and password (and port)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}:{port or parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _running_test_case() -> Any:
    """The Django test case class pytest-django runs this test in, if any.

    Django's test cases refuse connections to a ``DATABASES`` alias missing from their
    ``databases`` (set when the case was set up, before a kit adds its alias): the guard is a
    patched ``BaseDatabaseWrapper.ensure_connection`` that closes over the case class.
    """
    patched = BaseDatabaseWrapper.ensure_connection
    for cell in getattr(patched, "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, type) and hasattr(value, "_databases_names"):
            return value
    return None


@dataclass
class DatabaseKit:
    """Links to one fresh external database as several writers."""

    url: str
    kind: str = "database"
    links: list[Transport] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    case: Any = None
    case_databases: Any = None

    def __post_init__(self) -> None:
        self.case = _running_test_case()
        if self.case is not None:
            self.case_databases = self.case.databases
        self._allow(app_settings.EXTERNAL_DATABASE_ALIAS)

    def _allow(self, alias: str) -> None:
        """Let the running test case connect through ``alias`` (restored by :meth:`close`)."""
        if self.case is not None:
            self.case.databases = frozenset({*self.case.databases, alias})

    def link(self, *, node: str) -> Transport:
        return self._keep(DatabaseTransport(name="external-db", node=node))

    def down(self, *, node: str) -> Transport:
        """The same server's address on a port where nothing listens."""
        url = with_credentials(self.url, user="postgres", password="", port=free_port())
        return self._keep(DatabaseTransport(name="external-db", node=node, alias=self._alias(url)))

    def refused(self, *, node: str) -> Transport:
        """The same database as a user that does not exist, with a password."""
        url = with_credentials(
            self.url, user=f"cs_refused_{uuid.uuid4().hex[:8]}", password=REFUSED_PASSWORD
        )
        return self._keep(DatabaseTransport(name="external-db", node=node, alias=self._alias(url)))

    def _alias(self, url: str) -> str:
        alias = f"external_kit_{uuid.uuid4().hex[:8]}"
        self._allow(alias)
        alias_register(alias, url)
        self.aliases.append(alias)
        return alias

    def _keep(self, link: Transport) -> Transport:
        self.links.append(link)
        return link

    def close(self) -> None:
        for link in self.links:
            link.close()
        for alias in [*self.aliases, app_settings.EXTERNAL_DATABASE_ALIAS]:
            alias_forget(alias)
        if self.case is not None:
            self.case.databases = self.case_databases


@pytest.fixture
def database_kit(settings: Any) -> Iterator[TransportKit]:
    """A :class:`DatabaseKit` on a fresh external PostgreSQL database, dropped afterwards."""
    with external_database() as url:
        settings.EXTERNAL_DATABASE_URL = url
        kit = DatabaseKit(url=url)
        try:
            yield kit
        finally:
            kit.close()
