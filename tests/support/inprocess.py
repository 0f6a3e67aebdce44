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
import hashlib
import json
import re
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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

from configsync.models import PeerCheckpoint, ReplicatedRecord, SystemConfig
from configsync.replication import hlc
from configsync.replication.errors import TransportError
from configsync.replication.page import FeedPage
from configsync.replication.services.cycle import SyncCycleError, SyncResult, sync_cycle
from configsync.replication.services.peers import peer_seed_from_settings
from configsync.replication.transports.http import HttpPeerTransport
from configsync.replication.transports.nats import _LOOP as _NATS_LOOP
from configsync.replication.transports.nats import NatsTransport, stream_name
from configsync.services.system_config import system_config_delete, system_config_set
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


# --- a group of nodes on one NATS JetStream stream ---------------------------------------


@dataclass
class NatsMember:
    """One node of an :class:`InProcessNatsGroup`: its database and settings
    (:class:`InProcessNode`), its link to the stream (its own connection and durable
    consumer), the peer that stands for the stream, and its doorbell."""

    node: InProcessNode
    link: NatsTransport
    peer_id: int
    bell: Any = None
    """The doorbell's connection (``None`` while the node is stopped)."""
    cycles: int = 0
    last: SyncResult | None = None
    """The result of the node's last cycle."""
    applied_at: dict[str, float] = field(default_factory=dict)
    """``time.monotonic()`` when each key (as last written by the driver) became visible here."""

    @property
    def name(self) -> str:
        return self.node.name


class InProcessNatsGroup:
    """In-process nodes that replicate through one JetStream stream, as a fleet of followers.

    Each node is an :class:`InProcessNode` on a database of its own (``NodeDatabases``) with
    ``CONFIGSYNC_NATS_URL`` and ``CONFIGSYNC_GROUP_ID`` set and no HTTP peer: its only peer is
    the stream (``nats``, seeded by ``peer_seed_from_settings``), reached through a
    ``NatsTransport`` of its own that stays open across cycles (one connection, one durable
    consumer ``cs_<node>``). Every cycle is the product's ``sync_cycle`` with that transport:
    the same validation, apply path, conflicts and checkpoints as every other transport.

    What stands in for the follower process is the *doorbell*: a core NATS subscription per
    node on the stream's subjects (``configsync.<group>.>``), on a connection of its own. A
    message published to the stream rings every node's bell (the server pushes it; the node
    sends nothing), and :meth:`follow_once` runs :meth:`follow` on each node whose bell rang.
    An idle node therefore sends no request at all; a change costs each node one pull-only
    cycle. A bell only says "something may be new": what a cycle reads comes from the node's
    durable cursor, so a node whose bell was down (stopped, killed, a server restart) catches
    up on its next cycle from its committed cursor (:meth:`restart` runs one).

    Nodes run one at a time in the calling thread (a node's context is process-wide: the
    settings). With ``prefetch`` (the default) the network half of each rung node's pull (its
    consumer's info, the fetch, the log) runs for all rung nodes at once before their cycles
    (:class:`PrefetchingNatsTransport`), as separate follower processes would; each cycle then
    applies its page in turn.
    """

    def __init__(
        self,
        *,
        databases: NodeDatabases,
        url: str,
        group: str,
        prefetch: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self.databases = databases
        self.url = url
        self.group = group
        self.prefetch = prefetch
        self.timeout = timeout
        self.members: dict[str, NatsMember] = {}
        self._lock = threading.Lock()
        self._rung: set[str] = set()
        self._ring = threading.Event()
        self.watched: dict[str, str] = {}
        """key -> value the driver last wrote: each cycle that pulls something notes when a
        watched key shows that value on its node (``NatsMember.applied_at``)."""
        self.cycle_errors: list[str] = []
        self._unpushed: set[str] = set()
        """Nodes whose last push (or cycle) failed: their next follow pushes too."""
        self.seconds: defaultdict[str, float] = defaultdict(float)
        """Where :meth:`follow_once` spent its time: ``prefetch`` (the rung nodes' pulls, read
        ahead together) and ``cycles`` (their cycles, one after the other)."""

    # -- membership ---------------------------------------------------------------------------

    def settings_of(self, name: str) -> dict[str, Any]:
        return {
            "CONFIGSYNC_NATS_URL": self.url,
            "CONFIGSYNC_GROUP_ID": self.group,
            "CONFIGSYNC_DEPLOYMENT_MODE": "LOCAL_EXTERNAL",
            "CONFIGSYNC_SYNC_INTERVAL_SECONDS": 0,
        }

    def join(self, name: str, *, catch_up: bool = True) -> NatsMember:
        """A new node on a fresh database: its peer seeded, its link and doorbell open, and (with
        ``catch_up``) one cycle that reads the stream's history so far."""
        node = InProcessNode(
            name=name,
            database=self.databases.fresh(name),
            peers=[],
            extra_settings=self.settings_of(name),
        )
        with node.active():
            (peer,) = peer_seed_from_settings()
        member = NatsMember(node=node, link=self._link(name), peer_id=peer.pk)
        self.members[name] = member
        self._bell_open(member)
        if catch_up:
            self.cycle(name)
        return member

    def _link(self, name: str) -> NatsTransport:
        cls = PrefetchingNatsTransport if self.prefetch else NatsTransport
        return cls(
            name="nats",
            node=name,
            url=self.url,
            group=self.group,
            secret=SECRET,
            options={},
            timeout=self.timeout,
        )

    def _bell_open(self, member: NatsMember) -> None:
        import nats

        name = member.name
        prefix = f"configsync.{self.group}."

        async def ring(message: Any) -> None:
            with self._lock:
                self._rung.add(name)
            self._ring.set()

        async def rung_on_reconnect() -> None:  # messages may have gone by meanwhile
            with self._lock:
                self._rung.add(name)
            self._ring.set()

        async def quiet(*_: Any) -> None:
            return None

        async def open_bell() -> Any:
            nc = await nats.connect(
                servers=[self.url],
                name=f"configsync-bell {name}",
                connect_timeout=self.timeout,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.1,
                reconnected_cb=rung_on_reconnect,
                error_cb=quiet,
                disconnected_cb=quiet,
                closed_cb=quiet,
            )
            await nc.subscribe(f"{prefix}>", cb=ring)
            await nc.flush()
            return nc

        member.bell = _NATS_LOOP.run(open_bell(), timeout=self.timeout * 3)

    def _bell_close(self, member: NatsMember) -> None:
        bell, member.bell = member.bell, None
        if bell is not None:
            with contextlib.suppress(Exception):
                _NATS_LOOP.run(bell.close(), timeout=self.timeout)

    def stop(self, name: str) -> None:
        """The node's process ends (or is killed): its connections close without another word
        (nothing fetched is acknowledged); its database keeps what it committed."""
        member = self.members[name]
        self._bell_close(member)
        member.link.close()
        with self._lock:
            self._rung.discard(name)
        member.node.close()

    def restart(self, name: str) -> NatsMember:
        """The node starts again on its database: a new link and doorbell, then one cycle that
        catches up from its committed cursor."""
        member = self.members[name]
        member.link = self._link(name)
        self._bell_open(member)
        self.cycle(name)
        return member

    def running(self) -> list[NatsMember]:
        return [m for m in self.members.values() if m.bell is not None]

    # -- writes -------------------------------------------------------------------------------

    def write(self, name: str, key: str, value: str, *, push: bool = True) -> None:
        """``system_config_set`` on node ``name``; with ``push``, a push-only cycle publishes it."""
        with self.members[name].node.active():
            system_config_set(key=key, value=value)
        self.watched[key] = value
        if push:
            self.push(name)

    def delete(self, name: str, key: str, *, push: bool = True) -> None:
        with self.members[name].node.active():
            system_config_delete(key=key)
        self.watched.pop(key, None)
        if push:
            self.push(name)

    def push(self, name: str) -> SyncResult | None:
        """A push-only cycle of node ``name``. When it fails (the server unreachable, a
        connection that died with a restarted server) the failure goes to ``cycle_errors``, the
        node is rung and its next cycle (:meth:`follow_once`) pushes; ``None`` then."""
        try:
            return self.cycle(name, pull=False)
        except SyncCycleError as exc:
            self._failed(name, exc)
            return None

    def _failed(self, name: str, exc: SyncCycleError) -> None:
        self.cycle_errors.append(f"{name}: {exc}")
        self._unpushed.add(name)
        with self._lock:
            self._rung.add(name)
        self._ring.set()

    def cycle(self, name: str, *, pull: bool = True, push: bool = True) -> SyncResult:
        """One ``sync_cycle`` of node ``name`` with the stream, through its open link."""
        member = self.members[name]
        with member.node.active():
            result = sync_cycle(peer_id=member.peer_id, pull=pull, push=push, transport=member.link)
            if pull and result.pulled and self.watched:
                now = time.monotonic()
                for key, value in SystemConfig.objects.filter(
                    key__in=list(self.watched)
                ).values_list("key", "value"):
                    if self.watched.get(key) == value:
                        member.applied_at.setdefault(key, now)
        member.cycles += 1
        member.last = result
        return result

    # -- following ----------------------------------------------------------------------------

    def follow(self, name: str) -> SyncResult:
        """What a follower does when its bell rings: a pull-only cycle, then a push-only one
        when the pull met conflicts (what they merged is the node's to publish) or a push of
        the node failed before. A node's own writes go with their push cycles (:meth:`write`),
        so a pull that applied nothing of its own leaves nothing to push: a cycle with the push
        direction too would only record it (two more requests per change and node)."""
        result = self.cycle(name, push=False)
        if result.conflicts or name in self._unpushed:
            self.cycle(name, pull=False)
            self._unpushed.discard(name)
        return result

    def wake(self) -> None:
        """End the wait of a :meth:`follow_once` now (from another thread)."""
        self._ring.set()

    def ringing(self) -> bool:
        """Whether a bell rang that no cycle has answered yet."""
        with self._lock:
            return bool(self._rung)

    def rung(self) -> list[str]:
        """The running nodes whose bell rang since they last ran a cycle (and forgets them)."""
        with self._lock:
            names, self._rung = sorted(self._rung), set()
            self._ring.clear()
        return [n for n in names if n in self.members and self.members[n].bell is not None]

    def follow_once(self, *, wait: float = 0.0) -> int:
        """Run one pull cycle on every node whose bell rang (waiting at most ``wait`` seconds
        for one to ring); returns how many ran. A failed cycle is recorded in
        ``cycle_errors`` and rings the node again (the next round retries it)."""
        if wait and not self._ring.is_set():
            self._ring.wait(wait)
        names = self.rung()
        began = time.perf_counter()
        if self.prefetch:
            links = [self.members[n].link for n in names]
            _prefetch_all([link for link in links if isinstance(link, PrefetchingNatsTransport)])
        read = time.perf_counter()
        self.seconds["prefetch"] += read - began
        for name in names:
            try:
                self.follow(name)
            except SyncCycleError as exc:
                self._failed(name, exc)
        self.seconds["cycles"] += time.perf_counter() - read
        return len(names)

    def converged(self) -> bool:
        """Every running node's committed pull cursor is at the stream's last message."""
        last = self.stream_last_seq()
        for member in self.running():
            with member.node.active():
                cursor = (
                    PeerCheckpoint.objects.filter(peer_id=member.peer_id, direction="pull")
                    .values_list("cursor", flat=True)
                    .first()
                )
            if str(cursor or "") != (str(last) if last else ""):
                return False
        return True

    def settle(self, *, timeout: float = 120.0) -> int:
        """Follow until every running node has read the whole stream (bounded by ``timeout``:
        ``AssertionError`` then); returns the cycles run."""
        deadline = time.monotonic() + timeout
        ran = 0
        while True:
            ran += self.follow_once(wait=0.2)
            if not self._ring.is_set() and self.converged():
                return ran
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the group did not settle in {timeout}s; errors: {self.cycle_errors[-5:]}"
                )

    # -- what the nodes hold ------------------------------------------------------------------

    def records(self, name: str) -> list[tuple[str, str, str, bool, Any]]:
        with self.members[name].node.active():
            return [
                (r.model_label, r.natural_key, r.hlc, r.deleted, r.data)
                for r in ReplicatedRecord.objects.order_by("model_label", "natural_key")
            ]

    def digest(self, name: str) -> str:
        """A digest of every replication record node ``name`` holds (timestamps, tombstones,
        wire forms): equal digests, identical records."""
        text = json.dumps(self.records(name), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def digests(self) -> dict[str, str]:
        return {name: self.digest(name) for name in self.members}

    def values(self, name: str) -> dict[str, str]:
        with self.members[name].node.active():
            return dict(SystemConfig.objects.values_list("key", "value"))

    def stream_last_seq(self) -> int:
        """The stream's last sequence, read on a connection of the driver's own."""
        import nats

        async def read() -> int:
            nc = await nats.connect(servers=[self.url], connect_timeout=self.timeout)
            try:
                info = await nc.jetstream(timeout=self.timeout).stream_info(stream_name(self.group))
                return int(info.state.last_seq or 0)
            finally:
                await nc.close()

        return _NATS_LOOP.run(read(), timeout=self.timeout * 3)

    def close(self) -> None:
        for member in self.members.values():
            self._bell_close(member)
            member.link.close()
            member.node.close()


class PrefetchingNatsTransport(NatsTransport):
    """A ``NatsTransport`` whose next pull can be read ahead, off the node's thread.

    :meth:`prefetch` reads the page the node's next cycle will ask for (from the cursor this
    link last handed out or recorded) in a worker thread; :meth:`pull` answers with it when
    the cycle asks for exactly that page (same cursor, limit, echoes and log), else reads as
    usual. Reading ahead only moves what the consumer delivered, never what it acknowledged:
    a page the cycle does not use is read again from the committed cursor (the transport
    recreates its consumer there)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.cursor = ""
        self._ahead: tuple[tuple[str, int, bool, bool], Future[FeedPage]] | None = None

    def prefetch(self, pool: ThreadPoolExecutor, *, limit: int) -> None:
        key = (self.cursor, limit, False, True)
        self._ahead = (
            key,
            pool.submit(NatsTransport.pull, self, self.cursor, limit, with_log=True),
        )

    def pull(
        self, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False
    ) -> FeedPage:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            key, future = ahead
            try:
                page = future.result()
            except TransportError:
                page = None
            if page is not None and key == (cursor, limit, echoes, with_log):
                self.cursor = page.next_cursor or cursor
                return page
        page = super().pull(cursor, limit, echoes=echoes, with_log=with_log)
        self.cursor = page.next_cursor or cursor
        return page

    def log_record(self, *, direction: str, session: str, cursor: str) -> None:
        super().log_record(direction=direction, session=session, cursor=cursor)
        if direction == "pull":
            self.cursor = cursor


def _prefetch_all(links: list[PrefetchingNatsTransport]) -> None:
    if not links:
        return
    from configsync.conf import app_settings

    limit = int(app_settings.SYNC_BATCH_SIZE)
    with ThreadPoolExecutor(min(16, len(links))) as pool:
        for link in links:
            link.prefetch(pool, limit=limit)
        # The pool is left to finish: each cycle waits for its own page.
