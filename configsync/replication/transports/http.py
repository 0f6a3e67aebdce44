"""``HttpPeerTransport``: the peer's ``/api/v1/sync/`` endpoints over signed HTTP (requests).

The peer's clock is read from every answer: the ``clock_ms`` of a JSON body when there is one,
else the HTTP ``Date`` header (second resolution), which every answer carries, a refusal of a
stale signature included: a node whose clock is so far off that its peers cannot authenticate it
still learns by how much.

**Kept-alive sessions.** A transport opened without a session of its own uses this thread's
session to the peer's URL (:func:`peer_session`): one ``requests.Session`` per thread and base
URL, reused by every cycle the thread runs (a worker's pushes skip the TCP handshake), dropped
after a fork (a child opens its own) and closed when the process exits. A request that fails to
connect, e.g. on a kept-alive connection the peer has just closed, is signed again (a new
nonce) and sent once more: every sync request is idempotent.

**Delayed ACKs.** A server that writes an answer's headers and body in two sends without
``TCP_NODELAY`` (Django's ``runserver``, which ``make run`` and the multi-node harness use)
holds the body until the headers are acknowledged, and Linux delays that acknowledgement on a
kept-alive connection by 40 ms: every request would take 40 ms more. The sessions' connections
ask the kernel to acknowledge at once before reading each answer (``TCP_QUICKACK``, where the
platform has it). gunicorn sets ``TCP_NODELAY`` and is not affected.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import threading
import weakref
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from configsync.conf import app_settings
from configsync.replication.errors import TransportError
from configsync.replication.hlc import physical_now_ms
from configsync.replication.page import FeedPage, LogEntry
from configsync.replication.signing import sign
from configsync.replication.transports.base import (
    PushRecord,
    PushResult,
    ReplicationLogAnswer,
    Transport,
)

API_PREFIX = "/api/v1/sync"

_sessions = threading.local()
_opened: weakref.WeakSet[requests.Session] = weakref.WeakSet()
"""Every live session, to close at exit (a thread's sessions go with the thread)."""
_opened_lock = threading.Lock()


def _ack_at_once(sock: socket.socket | None) -> None:
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class _QuickAckHTTPConnection(HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _ack_at_once(self.sock)
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _ack_at_once(self.sock)  # type: ignore[arg-type]
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPPool(HTTPConnectionPool):
    ConnectionCls = _QuickAckHTTPConnection


class _QuickAckHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _QuickAckHTTPSConnection


class _PeerAdapter(HTTPAdapter):
    """requests' adapter whose connections acknowledge answers at once (module docstring)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {  # type: ignore[assignment]
            "http": _QuickAckHTTPPool,
            "https": _QuickAckHTTPSPool,
        }


def kept_alive_session() -> requests.Session:
    """A new ``requests.Session`` whose kept-alive connections acknowledge each answer at once
    (see the module docstring) and that keeps no cookies."""
    session = requests.Session()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    for prefix in ("http://", "https://"):
        session.mount(prefix, _PeerAdapter())
    return session


def peer_session(base_url: str) -> requests.Session:
    """This thread's kept-alive session to ``base_url`` (see the module docstring)."""
    pid = os.getpid()
    if getattr(_sessions, "pid", None) != pid:  # first use in this thread, or a forked child
        _sessions.pid, _sessions.by_url = pid, {}
    by_url: dict[str, requests.Session] = _sessions.by_url
    session = by_url.get(base_url)
    if session is None:
        session = by_url[base_url] = kept_alive_session()
        with _opened_lock:
            _opened.add(session)
    return session


def peer_sessions_close() -> None:
    """Close the connections of every kept-alive session this process opened (at exit; a
    session used again afterwards opens a new one)."""
    with _opened_lock:
        opened = list(_opened)
    for session in opened:
        session.close()


def _forget_after_fork() -> None:
    # The parent's sockets are not the child's to use or close.
    global _opened_lock
    _opened_lock = threading.Lock()
    _opened.clear()


atexit.register(peer_sessions_close)
os.register_at_fork(after_in_child=_forget_after_fork)


class HttpPeerTransport(Transport):
    """Talks to a peer at ``base_url``; signs every request with the group's secret."""

    prefetches = True

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        node: str,
        secret: str | None = None,
        timeout: float | None = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.node = node
        self.secret = app_settings.SYNC_SECRET if secret is None else secret
        self.timeout = float(app_settings.PEER_TIMEOUT_SECONDS if timeout is None else timeout)
        self.session = session or peer_session(self.base_url)

    def describe(self) -> str:
        return f"{self.name} ({self.base_url})"

    def close(self) -> None:
        """Nothing to release: the session is kept alive for the next cycle (or its owner's)."""

    def _send(self, method: str, path: str, body: bytes) -> requests.Response:
        """Sign and send; a failure to connect is tried once more, signed again."""
        for attempt in (1, 2):
            request = requests.Request(
                method,
                self.base_url + path,
                data=body or None,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            prepared = self.session.prepare_request(request)
            prepared.headers.update(
                sign(
                    secret=self.secret,
                    method=method,
                    path=prepared.path_url,
                    body=body,
                    node=self.node,
                )
            )
            try:
                return self.session.send(prepared, timeout=self.timeout)
            except requests.ConnectionError as exc:
                if attempt == 2 or isinstance(exc, requests.Timeout):
                    reason = type(exc).__name__
                    raise TransportError(f"peer {self.name} unreachable: {reason}") from None
            except requests.RequestException as exc:
                raise TransportError(
                    f"peer {self.name} unreachable: {type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, method: str, path: str, body: bytes = b"") -> Any:
        if not self.secret:
            raise TransportError("CONFIGSYNC_SYNC_SECRET is not set: cannot sign sync requests")
        sent_ms = physical_now_ms()
        response = self._send(method, path, body)
        try:
            payload = response.json()
        except (ValueError, RecursionError):  # too deep for the decoder: garbage too
            payload = None
        self._observe_clock(response, payload, sent_ms)
        if response.status_code >= 400:
            reason = _reason(payload) or f"HTTP {response.status_code}"
            skew = payload.get("skew_ms") if isinstance(payload, dict) else None
            raise TransportError(
                f"peer {self.name} refused: HTTP {response.status_code}: {reason}",
                status=response.status_code,
                skew_ms=skew if isinstance(skew, int) else None,
            )
        if not isinstance(payload, dict):
            raise TransportError(
                f"peer {self.name} answered garbage (not a JSON object)",
                status=response.status_code,
            )
        return payload

    def _observe_clock(self, response: requests.Response, payload: Any, sent_ms: int) -> None:
        """Remember the peer's clock minus ours, against the midpoint of the exchange."""
        midpoint = (sent_ms + physical_now_ms()) // 2
        clock = _int_or_none(payload.get("clock_ms")) if isinstance(payload, dict) else None
        if clock is None:
            try:
                # Date has second resolution: its second began up to 1 s before the answer.
                clock = int(parsedate_to_datetime(response.headers["Date"]).timestamp() * 1000)
                clock += 500
            except (KeyError, TypeError, ValueError, IndexError, OverflowError):
                return
        self.last_skew_ms = clock - midpoint

    def _page(
        self, path: str, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False
    ) -> FeedPage:
        params: dict[str, Any] = {"since": cursor, "limit": limit}
        if echoes:
            params["echoes"] = "true"
        if with_log:
            params["log"] = "true"
        query = urlencode(params)
        payload = self._request("GET", f"{path}?{query}")
        changes = payload.get("changes")
        next_cursor = payload.get("next_cursor")
        has_more = payload.get("has_more")
        node = payload.get("node")
        if (
            not isinstance(changes, list)
            or not isinstance(next_cursor, str)
            or not isinstance(has_more, bool)
            or not isinstance(node, str)
        ):
            raise TransportError(f"peer {self.name} answered garbage (not a feed page)")
        return FeedPage(
            node=node,
            changes=changes,
            next_cursor=next_cursor,
            has_more=has_more,
            reset=bool(payload.get("reset", False)),
            clock_ms=_int_or_none(payload.get("clock_ms")),
            hlc_ms=_int_or_none(payload.get("hlc_ms")),
            log=self._entries(payload["log"]) if with_log and "log" in payload else None,
        )

    def pull(
        self, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False
    ) -> FeedPage:
        return self._page(f"{API_PREFIX}/changes", cursor, limit, echoes=echoes, with_log=with_log)

    def digest(self, cursor: str, limit: int) -> FeedPage:
        return self._page(f"{API_PREFIX}/digest", cursor, limit)

    def push(self, changes: list[dict[str, Any]]) -> PushResult:
        return self._push(changes, with_log=False)

    def push_with_log(
        self, changes: list[dict[str, Any]], *, record: PushRecord | None = None
    ) -> PushResult:
        return self._push(changes, with_log=True, record=record)

    def _push(
        self, changes: list[dict[str, Any]], *, with_log: bool, record: PushRecord | None = None
    ) -> PushResult:
        document: dict[str, Any] = {"changes": changes}
        if record is not None:
            document["record"] = record.as_dict()
        body = json.dumps(document, separators=(",", ":")).encode()
        path = f"{API_PREFIX}/push" + ("?log=true" if with_log else "")
        payload = self._request("POST", path, body)
        results = payload.get("results")
        node = payload.get("node")
        if not isinstance(results, list) or not isinstance(node, str):
            raise TransportError(f"peer {self.name} answered garbage (not a push result)")
        if len(results) != len(changes):
            raise TransportError(
                f"peer {self.name} answered {len(results)} results for {len(changes)} changes"
            )
        return PushResult(
            node=node,
            results=results,
            clock_ms=_int_or_none(payload.get("clock_ms")),
            log=self._entries(payload["log"]) if with_log and "log" in payload else None,
            recorded=record is not None and payload.get("recorded") is True,
        )

    def log_get(self) -> ReplicationLogAnswer:
        payload = self._request("GET", f"{API_PREFIX}/log")
        node, raw = payload.get("node"), payload.get("entries")
        if not isinstance(node, str) or not isinstance(raw, list):
            raise TransportError(f"peer {self.name} answered garbage (not a replication log)")
        return ReplicationLogAnswer(
            node=node,
            entries=self._entries(raw),
            clock_ms=_int_or_none(payload.get("clock_ms")),
            hlc_ms=_int_or_none(payload.get("hlc_ms")),
        )

    def _entries(self, raw: Any) -> list[LogEntry]:
        if not isinstance(raw, list):
            raise TransportError(f"peer {self.name} answered garbage (not a replication log)")
        entries: list[LogEntry] = []
        for item in raw:
            fields = (
                [item.get(k) for k in ("direction", "session", "cursor")]
                if isinstance(item, dict)
                else []
            )
            texts = [f for f in fields if isinstance(f, str)]
            if len(texts) != 3:
                raise TransportError(f"peer {self.name} answered garbage (replication log entry)")
            entries.append(LogEntry(direction=texts[0], session=texts[1], cursor=texts[2]))
        return entries

    def log_record(self, *, direction: str, session: str, cursor: str) -> None:
        body = json.dumps(
            {"direction": direction, "session": session, "cursor": cursor}, separators=(",", ":")
        ).encode()
        payload = self._request("POST", f"{API_PREFIX}/log", body)
        entry = payload.get("entry")
        if not isinstance(entry, dict) or entry.get("session") != session:
            raise TransportError(f"peer {self.name} answered garbage (replication log record)")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reason(payload: Any) -> str:
    """The peer's stated reason for a refusal, as ASCII text (NUL, lone surrogates and other
    non-ASCII escaped): it ends up in a log line and a ``SyncRun``, storable on every backend."""
    if not isinstance(payload, dict):
        return ""
    detail = payload.get("detail")
    errors = payload.get("errors")
    if isinstance(detail, str):
        text = detail
    elif isinstance(errors, list) and errors and isinstance(errors[0], dict):
        text = str(errors[0].get("reason", ""))
    else:
        return ""
    return json.dumps(text[:300], ensure_ascii=True)[1:-1][:300]
