"""Several configsync nodes inside one test process, each on a database of its own.

What the model-based test (``tests/chaos/test_state_machine.py``) runs its nodes on. A node is a
migrated database (an SQLite file, or a PostgreSQL database cloned from a migrated template), its
settings (node id, peers, the test switches) and its physical clock. :meth:`InProcessNode.active`
makes a node *the* node of this thread: Django's ``default`` connection is the node's, the
settings are the node's (``override_settings``) and ``configsync.replication.hlc``'s physical
clock runs at the node's offset. Everything inside is the product's own code, unchanged.

Nodes talk through the real HTTP transport (:class:`InProcessHttpTransport`, a
``HttpPeerTransport``: signed requests, the real peer views, ``changes_receive`` and
``changes_apply``). Only the socket is replaced: a ``requests`` adapter hands each prepared
request to Django's test client inside the peer node's context and turns the answer back into a
``requests.Response``. A cut link (a partition) answers a connection error, as a cut network
would, and a node that "dies" while serving a request (:class:`NodeCrash`) is a connection
error for its caller.

Faults are injected at the edges: :meth:`InProcessNode.fault_on` wraps the node's database
connection (Django's ``execute_wrapper``) so that one statement fails — a transient database
error the product retries, or the process dying (:class:`NodeCrash`, a ``BaseException`` no
product code catches) — and the clock offset stands for a skewed system clock.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import requests
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend
from django.test import Client, override_settings
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from configsync.replication import hlc
from configsync.replication.transports.http import HttpPeerTransport
from multinode.cluster import pg_admin
from tests.support.replication import SECRET

URL_SUFFIX = ".invalid"
SIGNATURE_WINDOW_SECONDS = 900
"""How far apart two nodes' clocks may be and still accept each other's signed requests: wider
than the default 300 s, so a node skewed by up to ten minutes still talks to the others (and its
writes meet the skew bound, ``MAX_CLOCK_SKEW_SECONDS``); nodes skewed further apart refuse each
other until their clocks agree again."""
"""Peers' base URLs are ``http://<node>.invalid`` (a name no resolver answers)."""


class NodeCrash(BaseException):
    """The node's process died mid-operation. A ``BaseException``: no ``except Exception`` in
    the product catches it, so every transaction open at that moment rolls back, as the
    database does for a killed process."""


class _SkewedTime:
    """Stands for the ``time`` module inside ``configsync.replication.hlc``: the system clock
    read ``offset_ms`` away from the truth."""

    def __init__(self, real: Any, offset_ms: int) -> None:
        self._real = real
        self._offset_ns = offset_ms * 1_000_000

    def time_ns(self) -> int:
        return int(self._real.time_ns()) + self._offset_ns


_REAL_TIME = hlc.time


@dataclass
class Fault:
    """One armed fault: the first statement matching ``pattern`` fails with ``kind``
    (``"transient"``: ``OperationalError``, which the product retries; ``"crash"``:
    :class:`NodeCrash`)."""

    pattern: re.Pattern[str]
    kind: str
    fired: int = 0
    times: int = 1

    def __call__(
        self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, ctx: Any
    ) -> Any:
        if self.fired < self.times and self.pattern.search(str(sql)):
            self.fired += 1
            if self.kind == "crash":
                raise NodeCrash(f"node died at: {str(sql)[:60]}")
            raise OperationalError("server closed the connection unexpectedly (injected)")
        return execute(sql, params, many, ctx)


@dataclass
class InProcessNode:
    """One node of an :class:`InProcessGroup`."""

    name: str
    database: dict[str, Any]
    peers: list[str]
    offset_ms: int = 0
    merge_rule: str = ""
    extra_settings: dict[str, Any] = field(default_factory=dict)
    wrapper: BaseDatabaseWrapper | None = None
    down: bool = False
    """It died serving a request (:class:`NodeCrash`) and answers nothing until restarted."""

    def node_settings(self) -> dict[str, Any]:
        return {
            "CONFIGSYNC_NODE_ID": self.name,
            "CONFIGSYNC_SYNC_SECRET": SECRET,
            "CONFIGSYNC_PEERS": [f"{p}=http://{p}{URL_SUFFIX}" for p in self.peers],
            "CONFIGSYNC_DEPLOYMENT_MODE": "LOCAL_EXTERNAL",
            "CONFIGSYNC_PUSH_ON_WRITE": False,
            "CONFIGSYNC_ENV_FILE": "",
            "CONFIGSYNC_DATA_CALLBACK_URL": "",
            "CONFIGSYNC_TEST_MERGE_RULE": self.merge_rule,
            "CONFIGSYNC_SIGNATURE_MAX_AGE_SECONDS": SIGNATURE_WINDOW_SECONDS,
            **self.extra_settings,
        }

    def connection(self) -> BaseDatabaseWrapper:
        if self.wrapper is None:
            backend = load_backend(self.database["ENGINE"])
            self.wrapper = backend.DatabaseWrapper(dict(self.database), DEFAULT_DB_ALIAS)
        return self.wrapper

    @contextlib.contextmanager
    def active(self) -> Iterator[InProcessNode]:
        """This thread is this node inside the block (contexts nest: a node serving a request
        of another inside the other's cycle)."""
        previous = connections[DEFAULT_DB_ALIAS]
        connections[DEFAULT_DB_ALIAS] = self.connection()
        try:
            with (
                override_settings(**self.node_settings()),
                mock.patch.object(hlc, "time", _SkewedTime(_REAL_TIME, self.offset_ms)),
            ):
                yield self
        finally:
            connections[DEFAULT_DB_ALIAS] = previous

    @contextlib.contextmanager
    def fault_on(self, pattern: str, *, kind: str) -> Iterator[Fault]:
        """The first statement of this node matching ``pattern`` (a regular expression over the
        SQL) fails with ``kind`` inside the block."""
        fault = Fault(re.compile(pattern, re.IGNORECASE), kind)
        wrappers = self.connection().execute_wrappers
        wrappers.append(fault)
        try:
            yield fault
        finally:
            wrappers.remove(fault)

    def close(self) -> None:
        if self.wrapper is not None:
            self.wrapper.close()
            self.wrapper = None


class _NodeAdapter(BaseAdapter):
    """A ``requests`` adapter that serves each request with Django's test client inside the
    peer node's context (the socket replaced, nothing else)."""

    def __init__(self, group: InProcessGroup, caller: str) -> None:
        super().__init__()
        self.group = group
        self.caller = caller

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        host = (requests.utils.urlparse(request.url).hostname or "").removesuffix(URL_SUFFIX)
        self.group.requests += 1
        node = self.group.nodes.get(host)
        if node is None or not self.group.linked(self.caller, host):
            raise requests.ConnectionError(f"no route to {host}")
        if node.down:
            raise requests.ConnectionError(f"{host} refused the connection")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        body = request.body or b""
        try:
            with node.active():
                answer = Client(raise_request_exception=False).generic(
                    request.method or "GET",
                    request.path_url,
                    data=body,
                    content_type=request.headers.get("Content-Type", "application/json"),
                    headers=headers,
                )
        except NodeCrash:
            # The peer died mid-request: its caller sees the connection drop, and the peer
            # stays down until restarted (``InProcessNode.down``).
            node.down = True
            raise requests.ConnectionError(f"{host} closed the connection") from None
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.content
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        """Nothing held."""


class InProcessHttpTransport(HttpPeerTransport):
    """``HttpPeerTransport`` to another in-process node. Fetches no page ahead in another thread
    (``prefetches``): a node's context (its connection, settings, clock) belongs to one thread."""

    prefetches = False


@dataclass
class InProcessGroup:
    """The nodes of one run and the links between them (all up unless :meth:`cut`)."""

    nodes: dict[str, InProcessNode]
    cuts: set[frozenset[str]] = field(default_factory=set)
    requests: int = 0
    """Requests sent between the nodes so far (a cut link's included)."""

    def linked(self, a: str, b: str) -> bool:
        return frozenset((a, b)) not in self.cuts

    def cut(self, a: str, b: str) -> None:
        self.cuts.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cuts.clear()

    def transport(self, caller: str, peer: str) -> InProcessHttpTransport:
        """The transport ``caller`` (active) uses to reach ``peer``."""
        session = requests.Session()
        session.mount("http://", _NodeAdapter(self, caller))
        return InProcessHttpTransport(
            name=peer, base_url=f"http://{peer}{URL_SUFFIX}", node=caller, session=session
        )

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


# --- databases ---------------------------------------------------------------------------


@dataclass
class NodeDatabases:
    """Makes fresh migrated databases for nodes from one template migrated once.

    SQLite: a copy of the template's file per node. PostgreSQL: each node's database is cloned
    from the template once (``CREATE DATABASE … TEMPLATE``); asked for again (the next run of the
    state machine), it is put back to the template's contents in one transaction — every table
    emptied, the rows ``migrate`` wrote (content types, permissions, the node identity…) put
    back, sequences moved past them — which costs milliseconds where a drop and a clone cost
    seconds.
    """

    base: dict[str, Any]
    directory: Path
    prefix: str
    template: dict[str, Any] | None = None
    made: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeded: dict[str, str] = field(default_factory=dict)
    """PostgreSQL: the template's rows (as a JSON array) of each table ``migrate`` filled."""
    tables: list[str] = field(default_factory=list)
    identities: list[tuple[str, str]] = field(default_factory=list)

    @property
    def postgres(self) -> bool:
        return "postgresql" in self.base["ENGINE"]

    def _settings(self, name: str) -> dict[str, Any]:
        database = dict(self.base)
        database["NAME"] = name
        database["TEST"] = dict(self.base.get("TEST") or {})
        database["CONN_MAX_AGE"] = 0
        database["CONN_HEALTH_CHECKS"] = False
        if self.postgres:
            # Commits do not wait for the disk: the same transactions, visibility and locks, a
            # crash of the server aside (the runs' crashes are of the node, in this process).
            options = dict(database.get("OPTIONS") or {})
            options["options"] = (options.get("options", "") + " -c synchronous_commit=off").strip()
            database["OPTIONS"] = options
        return database

    def _url(self, name: str) -> str:
        b = self.base
        auth = b["USER"] + (f":{b['PASSWORD']}" if b.get("PASSWORD") else "")
        return f"postgres://{auth}@{b['HOST'] or '127.0.0.1'}:{b['PORT'] or 5432}/{name}"

    def _migrated_template(self) -> dict[str, Any]:
        if self.template is None:
            name = f"{self.prefix}_tmpl"
            if self.postgres:
                with pg_admin(self._url(name)) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    conn.execute(f'CREATE DATABASE "{name}"')
                template = self._settings(name)
            else:
                template = self._settings(str(self.directory / f"{name}.sqlite3"))
            node = InProcessNode(name="template", database=template, peers=[])
            try:
                with node.active():
                    call_command("migrate", verbosity=0, interactive=False)
            finally:
                node.close()
            if self.postgres:
                self._read_seed(name)
            self.template = template
        return self.template

    def _read_seed(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._url(name), autocommit=True) as conn:
            self.tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
                )
            ]
            for table in self.tables:
                rows = conn.execute(
                    sql.SQL("SELECT coalesce(json_agg(t), '[]')::text FROM {} AS t").format(
                        sql.Identifier(table)
                    )
                ).fetchone()
                if rows is not None and rows[0] != "[]":
                    self.seeded[table] = rows[0]
            self.identities = [
                (table, column)
                for table, column in conn.execute(
                    "SELECT table_name, column_name FROM information_schema.columns"
                    " WHERE table_schema = 'public'"
                    " AND (is_identity = 'YES' OR column_default LIKE 'nextval%%')"
                )
                if table in self.seeded
            ]

    def _pg_reset(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._url(name)) as conn:
            conn.execute("SET LOCAL synchronous_commit = off")
            # DELETE, not TRUNCATE: the tables hold a few rows, and TRUNCATE's new files cost
            # a second per run. Foreign keys are deferred (Django's), checked at commit.
            conn.execute("SET CONSTRAINTS ALL DEFERRED")
            for table in self.tables:
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            for table, rows in self.seeded.items():
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {0} SELECT * FROM json_populate_recordset(NULL::{0}, %s)"
                    ).format(sql.Identifier(table)),
                    [rows],
                )
            for table, column in self.identities:
                conn.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence(%s, %s), max({})) FROM {}"
                    ).format(sql.Identifier(column), sql.Identifier(table)),
                    [table, column],
                )

    def fresh(self, name: str) -> dict[str, Any]:
        """A migrated database for node ``name`` holding what ``migrate`` wrote, nothing else."""
        template = self._migrated_template()
        db = f"{self.prefix}_{name}"
        if self.postgres:
            if db in self.made:
                self._pg_reset(db)
            else:
                with pg_admin(self._url(db)) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                    conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{template["NAME"]}"')
            database = self._settings(db)
        else:
            path = self.directory / f"{db}.sqlite3"
            shutil.copyfile(template["NAME"], path)
            database = self._settings(str(path))
        self.made[db] = database
        return database

    def drop_all(self) -> None:
        if self.postgres:
            names = set(self.made)
            if self.template is not None:
                names.add(self.template["NAME"])

            def drop(name: str) -> None:
                with contextlib.suppress(Exception), pg_admin(self._url(name)) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

            # Together: each drop waits for a checkpoint, and concurrent ones share it.
            with ThreadPoolExecutor(len(names) or 1) as pool:
                list(pool.map(drop, sorted(names)))
        self.made.clear()
