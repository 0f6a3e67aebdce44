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
  let every other request through (a node that can pull from its peer but not push to it).

It also records every ``POST /api/v1/sync/push`` request that crosses a link whole (raw bytes,
signature headers and all), so the schedule can send them again later, duplicated and out of
order (:func:`replay`): what a retrying, reordering or hostile network does.

The proxy runs an asyncio loop in one daemon thread; :meth:`Proxy.close` stops it, bounded in time.
Everything binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 64 * 1024
PUSH_PREFIX = b"POST /api/v1/sync/push"
MAX_CAPTURED = 200


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
    captured: list[bytes] = field(default_factory=list)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        faults = [
            name
            for name, on in (
                ("cut", self.cut),
                ("drop", self.drop),
                (f"delay {self.delay_ms}ms", self.delay_ms),
                (f"reset after {self.reset_after}B", self.reset_after is not None),
                ("pushes blocked", self.block_push),
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
        length = 0
        for line in data[:head_end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = 0
        end = head_end + 4 + length
        if len(data) < end:
            return requests, data
        requests.append(data[:end])
        data = data[end:]


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

    def add(self, name: str, target: tuple[str, int]) -> Link:
        """A new link ``name`` forwarding to ``target``; its port is free and bound at once."""

        async def start() -> Link:
            link = Link(name=name, port=0, target=target)
            server = await asyncio.start_server(
                lambda r, w: self._handle(link, r, w), "127.0.0.1", 0
            )
            link.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
            return link

        link = self._run(start())
        self.links[name] = link
        return link

    def set(self, name: str, **faults: Any) -> None:
        """Set faults of link ``name`` (``cut``, ``drop``, ``delay_ms``, ``reset_after``);
        cutting it resets its open connections."""

        async def apply() -> None:
            link = self.links[name]
            for key, value in faults.items():
                if not hasattr(link, key) or key in ("name", "port", "target"):
                    raise AttributeError(key)
                setattr(link, key, value)
            if link.cut or link.drop:
                for writer in list(link.writers):
                    _abort(writer)

        self._run(apply())

    def heal(self) -> None:
        """Every link clean again."""
        for name in self.links:
            self.set(name, cut=False, drop=False, delay_ms=0, reset_after=None, block_push=False)

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
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*link.target), timeout=5
                )
            except (OSError, TimeoutError):
                _abort(writer)
                return
            upstream = up_writer
            link.writers.add(up_writer)
            await asyncio.gather(
                self._pump(link, reader, up_writer, request=True),
                self._pump(link, up_reader, writer, request=False),
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
    ) -> None:
        sent = 0
        pending = b""
        try:
            while True:
                chunk = await reader.read(CHUNK)
                if not chunk or link.cut or link.drop:
                    break
                if link.delay_ms:
                    await asyncio.sleep(link.delay_ms / 1000)
                if request and link.block_push and (pending + chunk).startswith(PUSH_PREFIX):
                    _abort(writer)
                    return
                if request:
                    whole, pending = split_requests(pending + chunk)
                    for item in whole:
                        if item.startswith(PUSH_PREFIX) and len(link.captured) < MAX_CAPTURED:
                            link.captured.append(item)
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
