"""``NatsTransport``: the replication group's changes in a NATS JetStream stream (nats-py).

A shared medium like the external database and the bucket (``configsync.replication.transports
.base``): it answers with the medium id ``nats.<group>``, applies nothing (``push`` answers
``applied`` for what it stored; every reader validates and decides through the same apply path as
every other transport) and reads the other writers' changes from a cursor.

Layout, per replication group (``CONFIGSYNC_GROUP_ID``; letters, digits, ``-``, ``_``):

* the stream ``CONFIGSYNC_<group>`` on subjects ``configsync.<group>.>``: each node publishes its
  own changes on ``configsync.<group>.<node>``, one message per change, the change's wire form
  as the other transports carry it (a sensitive value is the ciphertext it was given: nothing is
  decrypted or re-encoded), with a ``Nats-Msg-Id`` (a digest of writer and body) so a re-published
  change inside the stream's duplicate window is dropped by the server, and a
  ``Configsync-Mac`` header (HMAC-SHA256 under ``CONFIGSYNC_SYNC_SECRET`` of group, writer and
  body): a reader drops a message that fails it as a fault, so whoever may publish on the server
  but does not hold the group's secret cannot inject a change.
* the key-value bucket ``configsync_<group>``: ``group`` holds a verifier of the group's secret,
  written by the first node to use the stream (a node with another secret is refused before it
  publishes anything), ``log.<node>`` holds the node's replication log entries.
* a durable pull consumer per reading node, ``cs_<node>`` (ack policy "all"), filtered on every
  writer: its cursor on the server survives restarts and a pull of an idle node is one round
  trip (the stream's and the consumer's info, and the log when asked for, sent together:
  nothing pending, nothing fetched).

The transport's cursor is the stream sequence of the last message a page covered. The cycle
commits a page together with its cursor (``changes_apply(checkpoint=…)``) and only then asks for
the next page from it or records the direction (``log_record``): those two calls acknowledge the
messages up to the cursor, so a message is acknowledged only once its change is committed. The
cursor the caller holds is the truth, the consumer follows it: a consumer that delivered beyond
it (a cycle that failed before committing, a direction started over, ``echoes``) is recreated at
the cursor; a message redelivered at or below it (committed but not acknowledged when a process
died) is acknowledged and skipped. A cursor beyond the stream's last message (the stream was
recreated) starts over (``reset``). ``digest`` reads through a short-lived consumer and never
moves the durable one.

A push is not atomic across messages: a failure midway raises ``TransportError`` and the cycle
sends the batch again; what was stored is dropped as a duplicate (inside the window) or read as
stale by every reader (version vectors). Every failure to reach the server, a stream or a bucket
is a ``TransportError`` naming the server's host and the stream, never the URL's credentials, a
token or a value.

nats-py is asyncio; this transport is called from synchronous code (the cycle, the CLI, Celery
tasks). The facade (``_Loop``) runs one event loop in a daemon thread per process (started on
first use, started again in a forked child) and each call waits for its coroutine there. Chosen
over ``asyncio.run`` per call because a nats-py connection belongs to the loop it was opened on:
with a loop per call every call would open and close its own connection (a TCP, and with TLS a
handshake, per request).

**Pooled connection.** The transports of a process share one connection per node, server and
credentials (``_POOL``), and what a transport checked once (the stream's layout and retention,
the group's secret) is remembered with it: the cycle builds a transport per run, and an idle run
then costs one round trip (the consumer's and the stream's state, and the replication log when
asked for, sent together). :meth:`NatsTransport.close` forgets the instance's state and leaves
the shared connection open for the next transport (and the follower,
``configsync.replication.natsfollow``). A connection the server closed (a restarted server:
nats-py does not reconnect, ``allow_reconnect=False``) or that failed a request is dropped from
the pool, and the next call opens a new one; a call that finds its pooled connection dead is run
once more on a fresh one (every request here may be repeated: reads, publishes de-duplicated by
their message id, acknowledgements).

**Retention.** The stream keeps messages for ``CONFIGSYNC_NATS_MAX_AGE_SECONDS`` and at most
``CONFIGSYNC_NATS_MAX_MSGS`` of them (``0``: without limit, JetStream's default), applied when
the stream is created and updated when they change. A reader whose cursor is below what the
stream still holds (it was away longer than the retention, or it is new and the first messages
are gone) gets :class:`NatsGapError` instead of a page that would silently skip changes: it
catches up from a snapshot (the object store ``configsync_<group>_snap``, one object per writing
node: that node's whole state, ciphertext only, and the stream sequence it covers; see
:meth:`NatsTransport.snapshot_write`), then follows the stream from the sequence it covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

from configsync.conf import app_settings
from configsync.replication.errors import TransportError
from configsync.replication.page import FeedPage, LogEntry
from configsync.replication.transports.base import (
    PushResult,
    ReplicationLogAnswer,
    Transport,
    change_encoded,
    change_identity,
)

logger = logging.getLogger(__name__)

MEDIUM_PREFIX = "nats."
APPLIED = "applied"
DIGEST_FIELDS = ("model", "key", "hlc", "deleted")
MAC_HEADER = "Configsync-Mac"
MSG_ID_HEADER = "Nats-Msg-Id"
ACK_WAIT_SECONDS = 30.0
"""How long the server waits for an acknowledgement before it redelivers a message."""
MAX_ACK_PENDING = 100_000
SNAPSHOT_FORMAT = 1
"""The version of a snapshot object's document (``snapshot_write``)."""
_MAC_DOMAIN = b"configsync-nats/1"
_GROUP = re.compile(r"[A-Za-z0-9_\-]{1,40}")
_NODE = re.compile(r"[A-Za-z0-9_\-]{1,64}(?:\.[A-Za-z0-9_\-]+)*")
"""A node id that is a run of subject tokens (no empty token: no leading, trailing or doubled
dot), at most 64 characters (checked apart)."""
_CURSOR = re.compile(r"\d{1,19}")
_SNAP_CURSOR = re.compile(r"snap\.(\d{1,19})\.(\d{1,9})")
"""A cursor inside a snapshot: ``snap.<the sequence it covers>.<items applied>``."""
_PRINTABLE = re.compile(r"[\x21-\x7e]*")

T = TypeVar("T")


class _Loop:
    """One asyncio event loop in a daemon thread per process (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="configsync-nats", daemon=True
                )
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float) -> T:
        """Run ``coroutine`` on the loop and wait for it, at most ``timeout`` seconds (then it
        is cancelled and ``TimeoutError`` raised)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running())
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


_LOOP = _Loop()


@dataclasses.dataclass
class _Shared:
    """A pooled connection and what was checked on it (``(stream, bucket, verifier, retention)``
    tuples): only touched from the loop's thread."""

    nc: Any
    js: Any
    checked: set[tuple[Any, ...]] = dataclasses.field(default_factory=set)
    kvs: dict[str, Any] = dataclasses.field(default_factory=dict)


_POOL: dict[tuple[Any, ...], _Shared] = {}
"""Per process (the loop is), by server URL and connection options: see the module docstring."""


class NatsGapError(TransportError):
    """The stream no longer holds the messages right after the reader's cursor (retention
    dropped them): the reader catches up from a snapshot first."""

    def __init__(self, message: str, *, after: int, first_seq: int) -> None:
        super().__init__(message)
        self.after = after
        self.first_seq = first_seq


@dataclasses.dataclass(frozen=True)
class ConsumerLag:
    """A node's durable consumer against its stream, as the server reports them now.

    ``pending``: messages not delivered yet; ``ack_pending``: delivered, not acknowledged;
    ``lag``: messages after the acknowledged floor (``stream_last_seq - ack_floor``), the figure
    ``status`` and ``configsync_nats_consumer_lag`` show. ``exists``: the consumer is created by
    the node's first pull (before it, every figure counts from the stream's start)."""

    stream: str
    consumer: str
    exists: bool
    stream_first_seq: int
    stream_last_seq: int
    stream_messages: int
    delivered_seq: int
    ack_floor_seq: int
    pending: int
    ack_pending: int
    lag: int
    max_age_seconds: float
    max_msgs: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One snapshot object: ``writer``'s state (wire changes) covering the stream up to
    ``covers`` (its pull cursor when it was taken)."""

    writer: str
    covers: int
    taken_ms: int
    changes: list[dict[str, Any]]


def medium_id(group: str | None = None) -> str:
    """The node id the stream answers with: ``nats.<group>``."""
    return f"{MEDIUM_PREFIX}{group if group is not None else app_settings.GROUP_ID}"


def stream_name(group: str) -> str:
    return f"CONFIGSYNC_{group}"


def subject_prefix(group: str) -> str:
    return f"configsync.{group}."


def kv_bucket(group: str) -> str:
    return f"configsync_{group}"


def snapshot_bucket(group: str) -> str:
    """The object store of the group's snapshots."""
    return f"configsync_{group}_snap"


def durable_name(node: str) -> str:
    """The durable consumer of ``node`` (a consumer name has no dots: a node id with dots gets
    a digest suffix, so ``a.b`` and ``a_b`` never share one)."""
    name = node.replace(".", "_")
    if name != node:
        name += "_" + hashlib.sha256(node.encode()).hexdigest()[:10]
    return f"cs_{name}"


def message_mac(*, secret: str, group: str, writer: str, body: bytes) -> str:
    """The ``Configsync-Mac`` of a message: HMAC-SHA256 under the group's secret."""
    text = _MAC_DOMAIN + b"\0" + group.encode() + b"\0" + writer.encode() + b"\0" + body
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def group_verifier(*, secret: str, group: str) -> str:
    """What the bucket's ``group`` key holds: proof of the secret, not the secret."""
    text = _MAC_DOMAIN + b"\0verifier\0" + group.encode()
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def message_id(*, writer: str, body: bytes) -> str:
    """The ``Nats-Msg-Id`` of a change: the same change by the same writer, the same id."""
    return hashlib.sha256(writer.encode() + b"\0" + body).hexdigest()[:40]


def _host(url: str) -> str:
    """``host[:port]`` of a server URL, without credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


def _tls_context() -> ssl.SSLContext | None:
    ca, cert, key = (
        str(app_settings.NATS_TLS_CA_FILE or ""),
        str(app_settings.NATS_TLS_CERT_FILE or ""),
        str(app_settings.NATS_TLS_KEY_FILE or ""),
    )
    if not (ca or cert):
        return None
    context = ssl.create_default_context(cafile=ca or None)
    if cert:
        context.load_cert_chain(cert, key or None)
    return context


class NatsTransport(Transport):
    """The group's stream on a NATS server with JetStream: this node publishes its changes on
    its own subject and reads the others' through its durable consumer."""

    def __init__(
        self,
        *,
        name: str,
        node: str,
        url: str | None = None,
        group: str | None = None,
        secret: str | None = None,
        options: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """``url``, ``group``, ``secret`` default to ``CONFIGSYNC_NATS_URL``, ``GROUP_ID`` and
        ``SYNC_SECRET``; ``options`` (nats-py's ``connect`` keywords) default to the
        ``CONFIGSYNC_NATS_*`` credentials and TLS files. ``TransportError`` when unusable."""
        super().__init__()
        self.name = name
        self.node = node
        self.group = str(app_settings.GROUP_ID if group is None else group)
        self.url = str(app_settings.NATS_URL if url is None else url)
        self.secret = str(app_settings.SYNC_SECRET if secret is None else secret)
        self.timeout = float(app_settings.PEER_TIMEOUT_SECONDS if timeout is None else timeout)
        self.medium = medium_id(self.group)
        self.host = _host(self.url)
        self.stream = stream_name(self.group)
        self.prefix = subject_prefix(self.group)
        self.subject = f"{self.prefix}{node}"
        self.bucket = kv_bucket(self.group)
        self.durable = durable_name(node)
        self._options = options
        if not _GROUP.fullmatch(self.group):
            raise TransportError(
                f"{name}: CONFIGSYNC_GROUP_ID must be letters, digits, '-' or '_' (at most 40) "
                "to name a NATS stream"
            )
        if len(node) > 64 or not _NODE.fullmatch(node):
            raise TransportError(f"{name}: this node's id cannot name a NATS subject")
        if not self.url:
            raise TransportError(
                f"{name}: the NATS transport is not configured: set CONFIGSYNC_NATS_URL"
            )
        if not self.secret:
            raise TransportError(f"{name}: CONFIGSYNC_SYNC_SECRET is not set")
        self._nc: Any = None
        self._js: Any = None
        self._kv: Any = None
        self._ready = False
        self._last_seq = 0
        self._held: list[tuple[int, Any]] = []
        """Messages this instance fetched and has not acknowledged: (stream sequence, message)."""
        self._key: tuple[Any, ...] | None = None
        self._snap: Snapshot | None = None
        """The snapshot this instance is paging through (a node catching up)."""

    # -- the interface ------------------------------------------------------------------------

    def describe(self) -> str:
        return f"{self.name} (NATS at {self.host}, stream {self.stream})"

    def close(self) -> None:
        """Forget this instance's state; the pooled connection stays open for the process's
        next transport (see the module docstring). Messages held unacknowledged are left to the
        server's redelivery (a later reader acknowledges them at or below its cursor)."""
        self._nc, self._js, self._kv, self._ready, self._held = None, None, None, False, []

    def push(self, changes: list[dict[str, Any]]) -> PushResult:
        """Publish ``changes`` on this node's subject, one message each, and wait for the
        server's acknowledgements; each answers ``applied`` (the readers decide). A malformed
        item refuses the batch before anything is published."""
        if not isinstance(changes, list):
            raise TransportError(f"{self.name}: not a batch of changes")
        bodies: list[bytes] = []
        for index, change in enumerate(changes):
            _, text = change_encoded(change, medium=self.name, index=index)
            bodies.append(text.encode())
        if bodies:
            self._call("publish changes", lambda: self._publish(bodies))
        return PushResult(node=self.medium, results=[{"status": APPLIED} for _ in changes])

    def pull(
        self, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False
    ) -> FeedPage:
        """A page after ``cursor`` (see the module docstring); :class:`NatsGapError` when the
        stream no longer holds the messages right after it."""
        size = max(1, int(limit))
        inside = _SNAP_CURSOR.fullmatch(cursor)
        if inside is not None:
            covers, index = int(inside.group(1)), int(inside.group(2))
            return self._call(
                "read the snapshot", lambda: self._snapshot_page(covers, index, size, log=with_log)
            )
        after = self._position(cursor)
        return self._call(
            "read changes", lambda: self._pull(after, size, echoes=echoes, log=with_log)
        )

    def digest(self, cursor: str, limit: int) -> FeedPage:
        after = self._position(cursor)
        return self._call("read the digest", lambda: self._digest(after, max(1, int(limit))))

    def log_get(self) -> ReplicationLogAnswer:
        entries = self._call("read the replication log", self._log_read)
        return ReplicationLogAnswer(node=self.medium, entries=entries)

    def log_record(self, *, direction: str, session: str, cursor: str) -> None:
        fields = ((direction, 16), (session, 64), (cursor, self.max_cursor_length))
        if any(not _PRINTABLE.fullmatch(text) or len(text) > n for text, n in fields) or not (
            direction and session
        ):
            raise TransportError(f"{self.name}: not a replication log entry")
        self._call(
            "record the replication log", lambda: self._log_write(direction, session, cursor)
        )

    # -- beyond the interface: lag and snapshots (configsync.replication.natsfollow) ---------

    def lag(self) -> ConsumerLag:
        """This node's durable consumer against the stream, as the server reports them now."""
        return self._call("read the consumer's lag", self._lag)

    def snapshot_write(self, *, covers: int, changes: list[dict[str, Any]]) -> int:
        """Store this node's snapshot: ``changes`` (its whole state in wire form, ciphertext
        only) covering the stream up to ``covers``; replaces its previous one. Returns the
        object's size in bytes."""
        body = json.dumps(
            {
                "format": SNAPSHOT_FORMAT,
                "group": self.group,
                "writer": self.node,
                "covers": int(covers),
                "taken_ms": _now_ms(),
                "changes": changes,
            },
            separators=(",", ":"),
        ).encode()
        mac = message_mac(secret=self.secret, group=self.group, writer=self.node, body=body)
        document = mac.encode() + b"\n" + body
        self._call("store the snapshot", lambda: self._snapshot_put(document))
        return len(document)

    def snapshot_latest(self) -> Snapshot | None:
        """The snapshot covering the most of the stream, among every node's (one that fails
        the group's MAC is skipped as a fault); ``None`` when there is none."""
        return self._call("read the snapshots", self._snapshot_latest)

    def watch(self, callback: Callable[[], None]) -> Any:
        """Call ``callback()`` (in the loop's thread: keep it short) whenever a message is
        published on the group's subjects (this node's own too: reading past them keeps the
        consumer's lag at zero): a plain subscription on the pooled connection, no
        JetStream request, so waiting for changes costs nothing. Returns a handle for
        :meth:`watching` and :meth:`unwatch`. A wake-up only says "pull now": the changes
        themselves are read through the durable consumer."""
        return self._call("watch the stream", lambda: self._watch(callback))

    def watching(self, handle: Any) -> bool:
        """Whether the subscription ``handle`` still stands (its connection is open: a server
        restart closes it, and the follower subscribes again and pulls what it missed)."""
        nc = handle[0]
        return bool(nc.is_connected and not nc.is_closed)

    def unwatch(self, handle: Any) -> None:
        with contextlib.suppress(Exception):
            _LOOP.run(handle[1].unsubscribe(), timeout=self.timeout)

    # -- the facade ---------------------------------------------------------------------------

    def _call(self, action: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` on the process's loop; every failure a ``TransportError`` that names
        the server's host and the stream, never a credential. A call that failed on a pooled
        connection opened before it (the server restarted since) runs once more on a new one."""
        import nats.errors
        import nats.js.errors

        for attempt in (1, 2):
            try:
                reused = self._nc is not None or self._pooled() is not None
                checked = self._ready or self._checked()
                return _LOOP.run(make(), timeout=self.timeout * 3)
            except NatsGapError:
                raise
            except TransportError as exc:
                raise TransportError(f"{self.describe()}: {exc}") from None
            except nats.errors.AuthorizationError:
                reason = "credentials refused (check CONFIGSYNC_NATS_* credentials)"
            except nats.js.errors.ServiceUnavailableError:
                reason = "JetStream is not enabled on the server"
            except nats.errors.NoRespondersError:
                reason = "no JetStream on the server (no responders)"
            except (nats.js.errors.NotFoundError, nats.js.errors.NoStreamResponseError) as exc:
                # the stream or a bucket was deleted since it was checked: check again, once
                reason = f"refused by JetStream ({type(exc).__name__})"
                if attempt == 1 and checked:
                    self._unchecked()
                    continue
            except nats.js.errors.APIError as exc:
                code = exc.err_code or exc.code
                reason = f"refused by JetStream ({type(exc).__name__}, code {code})"
            except (
                nats.errors.ConnectionClosedError,
                nats.errors.StaleConnectionError,
                nats.errors.UnexpectedEOF,
            ) as exc:
                reason = f"connection lost ({type(exc).__name__})"
                self._drop()
                if attempt == 1 and reused:
                    continue
            except (nats.errors.NoServersError, ConnectionError, OSError) as exc:
                reason = f"unreachable ({type(exc).__name__})"
            except (TimeoutError, nats.errors.TimeoutError):
                reason = "timed out"
            except nats.errors.Error as exc:
                reason = type(exc).__name__
            self._drop()
            raise TransportError(f"{self.describe()}: cannot {action}: {reason}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _pool_key(self) -> tuple[Any, ...]:
        if self._key is not None:
            return self._key
        options = self._connect_options()
        tls = options.pop("tls", None)
        files = (
            tuple(
                str(getattr(app_settings, name) or "")
                for name in ("NATS_TLS_CA_FILE", "NATS_TLS_CERT_FILE", "NATS_TLS_KEY_FILE")
            )
            if tls is not None and self._options is None
            else (id(tls) if tls is not None else None)
        )
        secrets = hashlib.sha256(
            json.dumps(sorted((k, str(v)) for k, v in options.items())).encode()
        ).hexdigest()
        # the node too: its connection carries its name, and in-process nodes (tests, bench)
        # each keep a connection of their own, as separate processes would
        self._key = (self.url, self.node, secrets, files)
        return self._key

    def _pooled(self) -> _Shared | None:
        return _POOL.get(self._pool_key())

    def _checked(self) -> bool:
        shared = self._pooled()
        return shared is not None and any(c[0] == self.stream for c in shared.checked)

    def _unchecked(self) -> None:
        """Forget that this group's stream and buckets were checked (they are again next)."""
        shared = self._pooled()
        if shared is not None:
            shared.checked = {c for c in shared.checked if c[0] != self.stream}
            shared.kvs.pop(self.bucket, None)
        self._ready, self._held = False, []

    def _drop(self) -> None:
        """Forget a connection that failed, here and in the pool (the next call opens a new
        one); messages held on it are left to redelivery."""
        key = self._pool_key()
        shared = _POOL.get(key)
        nc = self._nc
        self._nc, self._js, self._kv, self._ready, self._held = None, None, None, False, []
        if shared is not None and (nc is None or shared.nc is nc):
            _POOL.pop(key, None)
            nc = shared.nc
        if nc is not None:
            try:
                _LOOP.run(nc.close(), timeout=self.timeout)
            except Exception:
                logger.debug("%s: closing a failed connection failed", self.describe())

    # -- connection and layout ----------------------------------------------------------------

    def _connect_options(self) -> dict[str, Any]:
        if self._options is not None:
            return dict(self._options)
        options: dict[str, Any] = {}
        for key, setting in (
            ("user", "NATS_USER"),
            ("password", "NATS_PASSWORD"),
            ("token", "NATS_TOKEN"),
            ("user_credentials", "NATS_USER_CREDENTIALS"),
        ):
            value = getattr(app_settings, setting)
            if value:
                options[key] = str(value)
        try:
            tls = _tls_context()
        except (OSError, ssl.SSLError):
            raise TransportError("cannot load CONFIGSYNC_NATS_TLS_* files") from None
        if tls is not None:
            options["tls"] = tls
        return options

    def _retention(self) -> tuple[float, int]:
        return (
            float(app_settings.NATS_MAX_AGE_SECONDS or 0),
            int(app_settings.NATS_MAX_MSGS or 0),
        )

    async def _ready_js(self) -> Any:
        """The JetStream context on the pooled connection, with the stream and bucket checked
        (once per connection). A connection the server closed (a restarted server) is dropped
        and a new one opened: the bug this fixes kept the closed one and failed the first cycle
        after every restart of the server."""
        if self._nc is not None and (self._nc.is_closed or not self._nc.is_connected):
            self._nc, self._js, self._kv, self._ready, self._held = None, None, None, False, []
        if self._ready:
            return self._js
        key = self._pool_key()
        shared = _POOL.get(key)
        if shared is not None and (shared.nc.is_closed or not shared.nc.is_connected):
            _POOL.pop(key, None)
            with contextlib.suppress(Exception):
                await shared.nc.close()
            shared = None
        if shared is None:
            opened = await self._connect()
            shared = _POOL.get(key)
            if shared is None:
                shared = _POOL[key] = opened
            else:  # another call opened one meanwhile: use it, close ours
                await opened.nc.close()
        self._nc, self._js = shared.nc, shared.js
        verifier = group_verifier(secret=self.secret, group=self.group)
        checked = (self.stream, self.bucket, verifier, self._retention())
        if checked in shared.checked and self.bucket in shared.kvs:
            self._kv = shared.kvs[self.bucket]
        else:
            await self._ensure_stream()
            await self._ensure_group()
            shared.kvs[self.bucket] = self._kv
            shared.checked.add(checked)
        self._ready = True
        return self._js

    async def _connect(self) -> _Shared:
        import nats

        async def quiet(*_: Any) -> None:
            return None

        nc = await nats.connect(
            servers=[self.url],
            name=f"configsync {self.node}",
            connect_timeout=self.timeout,
            allow_reconnect=False,
            # nats-py retries the first connect until a server's attempts exceed this (0
            # would retry forever): two attempts, then NoServersError.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=quiet,
            disconnected_cb=quiet,
            closed_cb=quiet,
            **self._connect_options(),
        )
        return _Shared(nc=nc, js=nc.jetstream(timeout=self.timeout))

    async def _ensure_stream(self) -> None:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        subjects = [f"{self.prefix}>"]
        max_age, max_msgs = self._retention()
        try:
            info = await self._js.stream_info(self.stream)
        except NotFoundError:
            config = StreamConfig(
                name=self.stream,
                subjects=subjects,
                storage=StorageType.FILE,
                duplicate_window=120.0,
                max_age=max_age or None,
                max_msgs=max_msgs or -1,
            )
            info = await self._js.add_stream(config)
        if list(info.config.subjects or []) != subjects:
            raise TransportError(f"stream {self.stream} is not this group's (its subjects differ)")
        held_age = float(info.config.max_age or 0)
        held_msgs = max(int(info.config.max_msgs or 0), 0)
        if (held_age, held_msgs) != (max_age, max_msgs):
            # the settings changed: every node applies the ones it has (keep them equal)
            info = await self._js.update_stream(
                dataclasses.replace(info.config, max_age=max_age or None, max_msgs=max_msgs or -1)
            )
        self._last_seq = int(info.state.last_seq or 0)

    async def _ensure_group(self) -> None:
        from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError

        try:
            self._kv = await self._js.key_value(self.bucket)
        except BucketNotFoundError:
            self._kv = await self._js.create_key_value(bucket=self.bucket, history=1)
        verifier = group_verifier(secret=self.secret, group=self.group)
        try:
            stored = (await self._kv.get("group")).value or b""
        except KeyNotFoundError:
            try:
                await self._kv.create("group", verifier.encode())
                return
            except KeyWrongLastSequenceError:  # another node created it meanwhile
                stored = (await self._kv.get("group")).value or b""
        if not hmac.compare_digest(stored, verifier.encode()):
            raise TransportError(
                f"the group {self.group!r} on this server uses another CONFIGSYNC_SYNC_SECRET: "
                "refused"
            )

    # -- writing ------------------------------------------------------------------------------

    async def _publish(self, bodies: list[bytes]) -> None:
        js = await self._ready_js()
        limit = int(self._nc.max_payload or 0)
        for index, body in enumerate(bodies):
            if limit and len(body) > limit - 1024:
                raise TransportError(f"item {index} is larger than the server's max payload")

        def headers(body: bytes) -> dict[str, str]:
            return {
                MSG_ID_HEADER: message_id(writer=self.node, body=body),
                MAC_HEADER: message_mac(
                    secret=self.secret, group=self.group, writer=self.node, body=body
                ),
            }

        pending: list[Awaitable[Any]] = [
            js.publish(self.subject, body, stream=self.stream, headers=headers(body))
            for body in bodies
        ]
        await asyncio.gather(*pending)

    # -- reading ------------------------------------------------------------------------------

    def _position(self, cursor: str) -> int:
        if cursor == "":
            return 0
        if not _CURSOR.fullmatch(cursor):
            raise TransportError(f"{self.name}: not a cursor of this medium (a stream sequence)")
        return int(cursor)

    async def _ack_upto(self, after: int) -> None:
        """Acknowledge the held messages at or below ``after`` (the caller committed them): the
        highest one acknowledges the lower ones too (ack policy "all")."""
        done = [entry for entry in self._held if entry[0] <= after]
        if not done or self._nc is None:
            return
        self._held = [entry for entry in self._held if entry[0] > after]
        import nats.errors

        # Acknowledged with a reply: the server has processed it when the next request runs.
        # An acknowledgement that goes unanswered is no error: the committed cursor is the
        # truth, and a message redelivered at or below it is only acknowledged again.
        try:
            await max(done, key=lambda entry: entry[0])[1].ack_sync(timeout=self.timeout)
        except (TimeoutError, nats.errors.Error, OSError):
            # unanswered, or its connection is gone (redelivered, then acknowledged here)
            logger.debug("%s: an acknowledgement went unanswered", self.describe())

    async def _state(self, *, log: bool) -> tuple[Any, Any, list[LogEntry] | None]:
        """The stream's and this node's consumer's state (``None``: no consumer yet) and, with
        ``log``, this node's replication log: three requests sent together, one round trip."""
        from nats.js.errors import NotFoundError

        async def consumer() -> Any:
            try:
                return await self._js.consumer_info(self.stream, self.durable)
            except NotFoundError:
                return None

        async def entries() -> list[LogEntry] | None:
            return await self._log_entries() if log else None

        stream, info, found = await asyncio.gather(
            self._js.stream_info(self.stream), consumer(), entries()
        )
        self._last_seq = int(stream.state.last_seq or 0)
        return stream, info, found

    async def _pull(self, after: int, limit: int, *, echoes: bool, log: bool) -> FeedPage:
        await self._ready_js()
        await self._ack_upto(after)
        stream, info, entries = await self._state(log=log)
        reset = False
        if after > self._last_seq:  # the stream was recreated: read it again
            after, reset = 0, True
        first = int(stream.state.first_seq or 0)
        if self._last_seq > after and first > after + 1:
            # retention dropped messages this node has not read: the newest snapshot first
            self._snap = await self._snapshot_latest()
            if self._snap is None or self._snap.covers + 1 < first:
                covered = (
                    "no snapshot"
                    if self._snap is None
                    else (f"the newest snapshot covers up to {self._snap.covers}")
                )
                raise NatsGapError(
                    f"{self.describe()}: the stream no longer holds messages {after + 1} to "
                    f"{first - 1} (retention: CONFIGSYNC_NATS_MAX_AGE_SECONDS, "
                    f"CONFIGSYNC_NATS_MAX_MSGS) and {covered}: run `configsync nats snapshot` "
                    "on an up-to-date node",
                    after=after,
                    first_seq=first,
                )
            page = await self._snapshot_page(self._snap.covers, 0, limit, log=False)
            return dataclasses.replace(page, log=entries, reset=reset)
        delivered = int(info.delivered.stream_seq or 0) if info is not None else -1
        if info is None or delivered != after:
            await self._durable_at(after, exists=info is not None)
        elif not (info.num_pending or info.num_ack_pending):
            return FeedPage(
                node=self.medium,
                changes=[],
                next_cursor=_text(after),
                has_more=False,
                log=entries,
                reset=reset,
            )
        page = await self._read(self.durable, after, limit, echoes=echoes, digest=False)
        return dataclasses.replace(page, log=entries, reset=reset)

    async def _lag(self) -> ConsumerLag:
        await self._ready_js()
        stream, info, _ = await self._state(log=False)
        last = int(stream.state.last_seq or 0)
        first = int(stream.state.first_seq or 0)
        floor = int(info.ack_floor.stream_seq or 0) if info is not None else 0
        return ConsumerLag(
            stream=self.stream,
            consumer=self.durable,
            exists=info is not None,
            stream_first_seq=first,
            stream_last_seq=last,
            stream_messages=int(stream.state.messages or 0),
            delivered_seq=int(info.delivered.stream_seq or 0) if info is not None else 0,
            ack_floor_seq=floor,
            pending=int(info.num_pending or 0) if info is not None else int(stream.state.messages),
            ack_pending=int(info.num_ack_pending or 0) if info is not None else 0,
            lag=max(last - floor, 0),
            max_age_seconds=float(stream.config.max_age or 0),
            max_msgs=max(int(stream.config.max_msgs or 0), 0),
        )

    async def _watch(self, callback: Callable[[], None]) -> tuple[Any, Any]:
        await self._ready_js()

        async def woken(_: Any) -> None:
            callback()

        return self._nc, await self._nc.subscribe(f"{self.prefix}>", cb=woken)

    async def _snapshot_page(self, covers: int, index: int, limit: int, *, log: bool) -> FeedPage:
        """Items ``index`` onwards of the snapshot covering ``covers``; its last page's cursor
        is ``covers``, where the stream takes over. A snapshot replaced meanwhile (another
        covers) is read from its start (applying again is idempotent)."""
        await self._ready_js()
        snap = self._snap
        if snap is None or snap.covers != covers:
            snap = self._snap = await self._snapshot_latest()
            if snap is None:
                raise TransportError("the snapshot being read is gone and none replaced it")
            if snap.covers != covers:
                index = 0
        part = snap.changes[index : index + limit]
        changes = [c for c in part if change_identity(c) is not None]
        for _ in range(len(part) - len(changes)):
            self._fault(f"snapshot of {snap.writer}: an item is not a change (dropped)")
        end = index + len(part)
        following = f"snap.{snap.covers}.{end}" if end < len(snap.changes) else _text(snap.covers)
        entries = await self._log_entries() if log else None
        return FeedPage(
            node=self.medium, changes=changes, next_cursor=following, has_more=True, log=entries
        )

    async def _snapshots(self) -> Any:
        from nats.js.errors import BucketNotFoundError, NotFoundError

        try:
            return await self._js.object_store(snapshot_bucket(self.group))
        except (BucketNotFoundError, NotFoundError):
            return await self._js.create_object_store(bucket=snapshot_bucket(self.group))

    async def _snapshot_put(self, document: bytes) -> None:
        await self._ready_js()
        store = await self._snapshots()
        await store.put(_object_name(self.node), document)

    async def _snapshot_latest(self) -> Snapshot | None:
        from nats.js.errors import NotFoundError

        await self._ready_js()
        store = await self._snapshots()
        try:
            infos = await store.list()
        except NotFoundError:  # an empty store
            return None
        best: Snapshot | None = None
        for info in infos or []:
            if getattr(info, "deleted", False):
                continue
            document = bytes((await store.get(info.name)).data or b"")
            mac, _, body = document.partition(b"\n")
            try:
                raw = json.loads(body)
                writer = str(raw["writer"])
                expected = message_mac(
                    secret=self.secret, group=self.group, writer=writer, body=body
                )
                if not hmac.compare_digest(mac, expected.encode()):
                    raise ValueError("mac")
                if raw["format"] != SNAPSHOT_FORMAT or raw["group"] != self.group:
                    raise ValueError("format")
                found = Snapshot(
                    writer=writer,
                    covers=int(raw["covers"]),
                    taken_ms=int(raw["taken_ms"]),
                    changes=list(raw["changes"]),
                )
            except (ValueError, KeyError, TypeError, RecursionError):
                self._fault(f"snapshot {info.name}: not one of this group's (skipped)")
                continue
            if best is None or found.covers > best.covers:
                best = found
        return best

    async def _durable_at(self, after: int, *, exists: bool) -> None:
        """(Re)create this node's durable consumer so it delivers from ``after + 1``."""
        from nats.js.api import AckPolicy, ConsumerConfig

        if exists:
            await self._js.delete_consumer(self.stream, self.durable)
        self._held = []
        await self._js.add_consumer(
            self.stream,
            config=ConsumerConfig(
                durable_name=self.durable,
                name=self.durable,
                filter_subject=f"{self.prefix}>",
                ack_policy=AckPolicy.ALL,
                ack_wait=ACK_WAIT_SECONDS,
                max_ack_pending=MAX_ACK_PENDING,
                **_start(after),
            ),
        )

    async def _digest(self, after: int, limit: int) -> FeedPage:
        """One page through a short-lived consumer (acknowledging nothing, moving nothing)."""
        from nats.js.api import AckPolicy, ConsumerConfig

        js = await self._ready_js()
        info = await js.add_consumer(
            self.stream,
            config=ConsumerConfig(
                filter_subject=f"{self.prefix}>",
                ack_policy=AckPolicy.NONE,
                inactive_threshold=max(5.0, self.timeout),
                mem_storage=True,
                **_start(after),
            ),
        )
        try:
            return await self._read(info.name, after, limit, echoes=True, digest=True)
        finally:
            await js.delete_consumer(self.stream, info.name)

    async def _read(
        self, consumer: str, after: int, limit: int, *, echoes: bool, digest: bool
    ) -> FeedPage:
        """A page of ``consumer`` after stream sequence ``after``: one pull request for at most
        ``limit`` messages, answered at once (``no_wait``)."""
        messages = await self._fetch(consumer, limit)
        changes: list[dict[str, Any]] = []
        position, more = after, False
        for message in messages:
            meta = message.metadata
            seq = int(meta.sequence.stream)
            if seq <= after:  # committed before, not acknowledged: only acknowledge it
                if consumer == self.durable:
                    self._held.append((seq, message))
                continue
            if consumer == self.durable:
                self._held.append((seq, message))
            position, more = max(position, seq), int(meta.num_pending or 0) > 0
            found = self._change(message, seq)
            if found is None or (found[0] == self.node and not echoes):
                continue
            change = found[1]
            changes.append({k: change.get(k) for k in DIGEST_FIELDS} if digest else change)
        if consumer == self.durable:
            await self._ack_upto(after)
        return FeedPage(
            node=self.medium, changes=changes, next_cursor=_text(position), has_more=more
        )

    def _change(self, message: Any, seq: int) -> tuple[str, dict[str, Any]] | None:
        """The writer of a message and the change it carries; ``None`` (and a fault) when it is
        not one or fails its MAC."""
        subject = str(message.subject)
        writer = subject[len(self.prefix) :] if subject.startswith(self.prefix) else ""
        if not writer or len(writer) > 64 or not _NODE.fullmatch(writer):
            self._fault(f"message {seq}: not on a writer's subject")
            return None
        body = bytes(message.data or b"")
        mac = (message.headers or {}).get(MAC_HEADER, "")
        expected = message_mac(secret=self.secret, group=self.group, writer=writer, body=body)
        if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
            self._fault(f"writer {writer}: message {seq} fails authentication (dropped)")
            return None
        try:
            change = json.loads(body)
        except (ValueError, RecursionError):
            change = None
        if change_identity(change) is None:
            self._fault(f"writer {writer}: message {seq} is not a change (dropped)")
            return None
        assert isinstance(change, dict)
        return writer, change

    async def _fetch(self, consumer: str, limit: int) -> list[Any]:
        """Up to ``limit`` messages of ``consumer``: one ``no_wait`` pull request, answered with
        what is available, then a "no messages" status (or nothing when all ``limit`` came)."""
        nc = self._nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        try:
            request = json.dumps({"batch": limit, "no_wait": True}).encode()
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{consumer}", request, reply=inbox
            )
            messages: list[Any] = []
            while len(messages) < limit:
                message = await sub.next_msg(timeout=self.timeout)
                status = (message.headers or {}).get("Status")
                if status:
                    if status == "100":  # a heartbeat
                        continue
                    break  # 404 no messages, 408 request expired
                messages.append(message)
            return messages
        finally:
            await sub.unsubscribe()

    # -- replication log ----------------------------------------------------------------------

    async def _log_entries(self) -> list[LogEntry]:
        """This node's log as the bucket keeps it; a damaged one reads as empty (the sessions
        then differ and the directions start over: safe, one full cycle)."""
        from nats.js.errors import KeyNotFoundError

        try:
            value = (await self._kv.get(f"log.{self.node}")).value or b""
        except KeyNotFoundError:
            return []
        try:
            raw = json.loads(value)["entries"]
            entries = [
                LogEntry(direction=e["direction"], session=e["session"], cursor=e["cursor"])
                for e in raw
            ]
            if all(isinstance(v, str) for e in entries for v in (e.direction, e.session, e.cursor)):
                return entries
        except (ValueError, RecursionError, TypeError, KeyError):
            pass
        logger.warning("%s: this node's replication log is damaged", self.describe())
        return []

    async def _log_read(self) -> list[LogEntry]:
        await self._ready_js()
        return await self._log_entries()

    async def _log_write(self, direction: str, session: str, cursor: str) -> None:
        await self._ready_js()
        if direction == "pull" and _CURSOR.fullmatch(cursor):
            await self._ack_upto(int(cursor))  # recorded: the pulled changes are committed
        entries = [e for e in await self._log_entries() if e.direction != direction]
        entries.append(LogEntry(direction=direction, session=session, cursor=cursor))
        document = {
            "entries": [
                {"direction": e.direction, "session": e.session, "cursor": e.cursor}
                for e in sorted(entries, key=lambda e: e.direction)
            ]
        }
        await self._kv.put(f"log.{self.node}", json.dumps(document).encode())

    def _fault(self, reason: str) -> None:
        if reason not in self.faults:
            self.faults.append(reason)


def _object_name(node: str) -> str:
    """A node's snapshot object (a node id is a subject's tokens: dots become dashes, with the
    durable name's digest suffix keeping ``a.b`` and ``a-b`` apart)."""
    return durable_name(node)[3:]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(position: int) -> str:
    return str(position) if position > 0 else ""


def _start(after: int) -> dict[str, Any]:
    """A consumer's start: the stream's first message, or the one after ``after``."""
    from nats.js.api import DeliverPolicy

    if after <= 0:
        return {"deliver_policy": DeliverPolicy.ALL}
    return {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": after + 1}
