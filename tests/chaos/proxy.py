"""A small fault-injecting TCP proxy: one listening port per directed link (``a`` → ``b``).

Node ``a`` is configured to reach ``b`` (an HTTP peer, the shared bucket's S3 server, the
external PostgreSQL database) through its link's port, so every byte between them crosses the
proxy, which can at any moment:

- ``cut`` the link: open connections are reset and new ones are reset on accept (a partition or
  a storage outage, as the client sees it: connection refused/reset, never a late answer);
- ``delay`` it: every chunk, both ways, waits ``delay_ms`` first;
- ``drop`` it: connections are accepted and nothing is forwarded either way (the client waits
  for its own timeout, as behind a black hole);
- ``reset_after`` N bytes of a response: the request reaches the server (which acts on it), the
  client gets the first N bytes of the answer and then a TCP reset: an acknowledgement lost
  mid-response;
- ``block_push``: reset a connection as soon as a ``POST /api/v1/sync/push`` starts on it, and
  let every other request through (a node that can pull from its peer but not push to it);
- ``lose_ack``: let a write (``POST``/``PUT``/``PATCH``/``DELETE``) through, wait for the server's
  answer and, when it is a 2xx (the server committed), reset the client's connection instead of
  forwarding it: the writer sees a failure for a write that is committed. Each such answer is
  counted in :attr:`Link.lost_acks`, so the writer's harness knows the write committed.

A link made with ``capture=True`` (the HTTP peer links) also records every
``POST /api/v1/sync/push`` request that crosses it whole (raw bytes, signature headers and all),
so the schedule can send them again later, duplicated and out of order (:func:`replay`): what a
retrying, reordering or hostile network does. Other links (PostgreSQL, S3, the forwarders of
nodes in network namespaces) are not parsed at all: their bytes are no HTTP requests, and
buffering them in search of one grew a buffer copied on every chunk (quadratic time).

A link's listening socket, and the connections it makes to its target, may each live in a
network namespace of their own (``listen_ns``/``target_ns``, :func:`tests.chaos.netns.socket_in`):
that is how nodes in namespaces reach the services on the root namespace's loopback and each
other over their veth links.

The proxy runs an asyncio loop in one daemon thread; :meth:`Proxy.close` stops it, bounded in time.
Everything binds 127.0.0.1 unless a link is given another address (in its namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.chaos.netns import socket_in

T = TypeVar("T")
CHUNK = 64 * 1024
PUSH_PREFIX = b"POST /api/v1/sync/push"
MAX_CAPTURED = 200
MAX_HEAD = 64 * 1024
"""Bytes without an end of HTTP headers after which a capturing link stops looking for one."""
WRITE_METHODS = (b"POST ", b"PUT ", b"PATCH ", b"DELETE ")
METHODS = (*WRITE_METHODS, b"GET ", b"HEAD ", b"OPTIONS ")
"""How a request starts: a chunk that does not is the rest of one (its body)."""


@dataclass
class Link:
    """One directed link and its current faults (change them with :meth:`Proxy.set`)."""

    name: str
    port: int
    target: tuple[str, int]
    cut: bool = False
    drop: bool = False
    delay_ms: int = 0
    reset_after: int | None = None
    block_push: bool = False
    lose_ack: bool = False
    capture: bool = False
    host: str = "127.0.0.1"
    listen_ns: str = ""
    """The network namespace the listening socket lives in (empty: the root one)."""
    target_ns: str = ""
    """The network namespace connections to :attr:`target` are made from (empty: the root one)."""
    lost_acks: int = 0
    """2xx answers to writes withheld by ``lose_ack`` (the writer saw a reset; the server
    committed)."""
    captured: list[bytes] = field(default_factory=list)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def describe(self) -> str:
        faults = [
            name
            for name, on in (
                ("cut", self.cut),
                ("drop", self.drop),
                (f"delay {self.delay_ms}ms", self.delay_ms),
                (f"reset after {self.reset_after}B", self.reset_after is not None),
                ("pushes blocked", self.block_push),
                ("2xx to writes lost", self.lose_ack),
            )
            if on
        ]
        return f"{self.name}: {', '.join(faults) or 'clean'}"


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a clean FIN."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    writer.transport.abort()


def split_requests(data: bytes) -> tuple[list[bytes], bytes]:
    """Whole HTTP/1.1 requests (``Content-Length`` bodies) at the head of ``data``, and the rest."""
    requests: list[bytes] = []
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return requests, data
        end = head_end + 4 + _content_length(data[:head_end])
        if len(data) < end:
            return requests, data
        requests.append(data[:end])
        data = data[end:]


class _Requests:
    """Whole requests cut from a stream fed chunk by chunk, in linear time: one growing buffer,
    sliced only when a request is complete; given up (emptied) when ``MAX_HEAD`` bytes hold no
    end of headers, as on a stream that is no HTTP."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.need = 0  # bytes the request at the head needs, once its headers are known

    def feed(self, chunk: bytes) -> list[bytes]:
        self.buffer += chunk
        whole: list[bytes] = []
        while self.buffer:
            if not self.need:
                head_end = self.buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    if len(self.buffer) > MAX_HEAD:
                        self.buffer.clear()
                    break
                self.need = head_end + 4 + _content_length(bytes(self.buffer[:head_end]))
            if len(self.buffer) < self.need:
                break
            whole.append(bytes(self.buffer[: self.need]))
            del self.buffer[: self.need]
            self.need = 0
        return whole


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return max(0, int(value.strip()))
            except ValueError:
                return 0
    return 0


class Proxy:
    """The links of one cluster, served by one event loop in a thread."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def add(
        self,
        name: str,
        target: tuple[str, int],
        *,
        capture: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        listen_ns: str = "",
        target_ns: str = "",
    ) -> Link:
        """A new link ``name`` forwarding to ``target``, listening on ``host:port`` (a free port
        when 0) in namespace ``listen_ns`` and connecting from ``target_ns`` (empty: the root
        namespace); ``capture``: record the push batches crossing it (HTTP peer links)."""

        async def start() -> Link:
            link = Link(
                name=name,
                port=0,
                target=target,
                capture=capture,
                host=host,
                listen_ns=listen_ns,
                target_ns=target_ns,
            )
            sock = _listening_socket(listen_ns, host, port)
            server = await asyncio.start_server(lambda r, w: self._handle(link, r, w), sock=sock)
            link.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
            return link

        link = self._run(start())
        self.links[name] = link
        return link

    def set(self, name: str, **faults: Any) -> None:
        """Set faults of link ``name`` (``cut``, ``drop``, ``delay_ms``, ``reset_after``,
        ``block_push``, ``lose_ack``); cutting it resets its open connections."""

        async def apply() -> None:
            link = self.links[name]
            for key, value in faults.items():
                if key not in FAULTS:
                    raise AttributeError(key)
                setattr(link, key, value)
            if link.cut or link.drop:
                for writer in list(link.writers):
                    _abort(writer)

        self._run(apply())

    def heal(self) -> None:
        """Every link clean again."""
        for name in self.links:
            self.set(
                name,
                cut=False,
                drop=False,
                delay_ms=0,
                reset_after=None,
                block_push=False,
                lose_ack=False,
            )

    def captured(self, name: str) -> list[bytes]:
        return list(self.links[name].captured)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for link in self.links.values():
                for writer in list(link.writers):
                    _abort(writer)

        with contextlib.suppress(Exception):
            self._run(stop(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # --- the loop's side --------------------------------------------------------------------

    async def _handle(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if link.cut:
            _abort(writer)
            return
        link.writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            if link.drop:
                while await reader.read(CHUNK):
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(_connect(link), timeout=5)
            except (OSError, TimeoutError):
                _abort(writer)
                return
            upstream = up_writer
            link.writers.add(up_writer)
            method = [b""]  # the method of the last request seen on this connection
            await asyncio.gather(
                self._pump(link, reader, up_writer, request=True, method=method),
                self._pump(link, up_reader, writer, request=False, method=method),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    link.writers.discard(w)
                    with contextlib.suppress(Exception):
                        w.close()

    async def _pump(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        request: bool,
        method: list[bytes],
    ) -> None:
        sent = 0
        requests = _Requests() if request and link.capture else None
        fresh = True  # the next request chunk starts a request (keep-alive: one at a time)
        try:
            while True:
                chunk = await reader.read(CHUNK)
                if not chunk or link.cut or link.drop:
                    break
                if link.delay_ms:
                    await asyncio.sleep(link.delay_ms / 1000)
                if request and fresh and chunk.startswith(METHODS):
                    method[0] = next((m for m in WRITE_METHODS if chunk.startswith(m)), b"")
                pushing = chunk.startswith(PUSH_PREFIX[: len(chunk)])
                if request and fresh and link.block_push and pushing:
                    _abort(writer)
                    return
                if requests is not None:
                    whole = requests.feed(chunk)
                    fresh = not requests.buffer
                    for item in whole:
                        if item.startswith(PUSH_PREFIX) and len(link.captured) < MAX_CAPTURED:
                            link.captured.append(item)
                if not request and link.lose_ack and method[0] and _is_2xx(chunk):
                    link.lost_acks += 1  # committed; the writer never knows
                    _abort(writer)
                    return
                if not request and link.reset_after is not None:
                    room = link.reset_after - sent
                    if room <= len(chunk):
                        writer.write(chunk[: max(room, 0)])
                        with contextlib.suppress(OSError):
                            await writer.drain()
                        _abort(writer)
                        return
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        if link.cut or link.drop:
            _abort(writer)
        else:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()


def _is_2xx(chunk: bytes) -> bool:
    """Whether ``chunk`` starts an HTTP answer with a 2xx status (``HTTP/1.1 204 …``)."""
    return chunk.startswith(b"HTTP/1.") and chunk[9:10] == b"2"


FAULTS = frozenset(("cut", "drop", "delay_ms", "reset_after", "block_push", "lose_ack"))


def _listening_socket(namespace: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` in ``namespace`` (empty: this thread's own)."""
    sock = socket_in(namespace) if namespace else socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect(link: Link) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the link's target, made from its ``target_ns``."""
    if not link.target_ns:
        return await asyncio.open_connection(*link.target)
    sock = socket_in(link.target_ns)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, link.target)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def resign(raw: bytes, *, secret: str, now_s: int) -> bytes:
    """``raw`` (a captured signed request) signed again with a fresh nonce and timestamp
    ``now_s``: what a peer that retries the same batch sends, so it passes the replay check
    and reaches the apply code again."""
    import hashlib
    import hmac
    import secrets

    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, path = lines[0].split(b" ")[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    node = headers.get(b"x-configsync-node", b"").decode()
    nonce = secrets.token_hex(16)
    digest = hashlib.sha256(body).hexdigest()
    parts = [method.decode().upper(), path.decode(), str(now_s), nonce, digest, node]
    canonical = "\n".join(parts).encode()
    mac = hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()
    fresh = {
        b"x-configsync-timestamp": str(now_s).encode(),
        b"x-configsync-nonce": nonce.encode(),
        b"x-configsync-signature": mac.encode(),
    }
    out = [lines[0]]
    for line in lines[1:]:
        name = line.partition(b":")[0].strip()
        out.append(name + b": " + fresh[name.lower()] if name.lower() in fresh else line)
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def replay(raw: bytes, port: int, *, timeout: float = 10.0) -> int | None:
    """Send one captured request as is to 127.0.0.1:``port``; its HTTP status (``None`` when
    no answer came)."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(raw)
        answer = b""
        while b"\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        parts = answer.split(b" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1])
    return None
