"""A private nats-server for one test or benchmark: started on a free 127.0.0.1 port, stopped
after.

The shared server on 127.0.0.1:4222 (``tests.support.kit_nats``) serves the contract suite; a
test that restarts, kills or reconfigures a server (the chaos tests, the leaf-node test) starts
its own with :class:`NatsServer`: ``/usr/sbin/nats-server`` (``NATS_SERVER_BIN`` overrides), a
configuration file written into a temporary folder of its own, JetStream's store in that folder
(so a restart finds the stream again, and a kill -9 loses only what the server had not synced),
every wait bounded (``START_TIMEOUT`` seconds to accept connections, ``STOP_TIMEOUT`` to exit).
:meth:`NatsServer.restart` keeps the port, the configuration and the store.

``jetstream=False`` starts a server without JetStream (a leaf node that forwards to a hub);
``domain`` names the JetStream domain; ``leaf_listen=True`` opens a port for leaf nodes
(:attr:`NatsServer.leaf_port`); ``leaf_remotes`` connects this server as a leaf node to hubs'
leaf ports; ``mappings`` are subject mappings of the server's account (``{from: to}``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from multinode.cluster import free_port

NATS_SERVER_BIN = os.environ.get("NATS_SERVER_BIN", "/usr/sbin/nats-server")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def nats_server_installed() -> bool:
    return os.access(NATS_SERVER_BIN, os.X_OK) or shutil.which(NATS_SERVER_BIN) is not None


def skip_without_nats_server() -> None:
    if not nats_server_installed():
        pytest.skip(f"no nats-server at {NATS_SERVER_BIN} (install it, or set NATS_SERVER_BIN)")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class NatsServer:
    """One nats-server process (see the module's docstring)."""

    name: str = "configsync-test"
    jetstream: bool = True
    domain: str = ""
    leaf_listen: bool = False
    leaf_remotes: list[str] = field(default_factory=list)
    mappings: dict[str, str] = field(default_factory=dict)
    monitor: bool = False
    port: int = 0
    monitor_port: int = 0
    leaf_port: int = 0
    directory: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _owns_directory: bool = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def leaf_url(self) -> str:
        """What a leaf node's ``remotes`` names to connect to this server."""
        return f"nats-leaf://127.0.0.1:{self.leaf_port}"

    @property
    def log_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "server.log"

    def config(self) -> str:
        """The server's configuration file (nats-server's own format)."""
        assert self.directory is not None
        lines = [
            f"server_name: {_quoted(self.name)}",
            f"listen: 127.0.0.1:{self.port}",
            # The test servers are quiet and small: no monitoring port, bounded payloads.
            "max_payload: 1048576",
        ]
        if self.monitor:
            lines.append(f"http: 127.0.0.1:{self.monitor_port}")
        if self.jetstream:
            store = _quoted(str(self.directory / "jetstream"))
            domain = f", domain: {_quoted(self.domain)}" if self.domain else ""
            lines.append(
                f"jetstream {{ store_dir: {store}, max_memory_store: 64MB,"
                f" max_file_store: 1GB{domain} }}"
            )
        leaf: list[str] = []
        if self.leaf_listen:
            leaf.append(f"listen: 127.0.0.1:{self.leaf_port}")
        if self.leaf_remotes:
            remotes = ", ".join(f"{{ url: {_quoted(url)} }}" for url in self.leaf_remotes)
            leaf.append(f"remotes: [ {remotes} ]")
            leaf.append("reconnect: 1")
        if leaf:
            lines.append("leafnodes { " + ", ".join(leaf) + " }")
        if self.mappings:
            pairs = ", ".join(f"{_quoted(a)}: {_quoted(b)}" for a, b in self.mappings.items())
            lines.append(f"mappings: {{ {pairs} }}")
        return "\n".join(lines) + "\n"

    def start(self) -> NatsServer:
        """Start the server (a first start picks the ports and the folder) and wait, at most
        ``START_TIMEOUT`` seconds, until it accepts connections."""
        skip_without_nats_server()
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="configsync-nats-"))
            self._owns_directory = True
        if not self.port:
            self.port = free_port()
        if self.leaf_listen and not self.leaf_port:
            self.leaf_port = free_port()
        if self.monitor and not self.monitor_port:
            self.monitor_port = free_port()
        conf = self.directory / "server.conf"
        conf.write_text(self.config())
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [NATS_SERVER_BIN, "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start: {self.log_tail()}")
            ports = [self.port] + ([self.leaf_port] if self.leaf_listen else [])
            if all(_accepts(port) for port in ports) and self._ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start in {START_TIMEOUT}s")
            time.sleep(0.05)

    def _ready(self) -> bool:
        """The server's log says it is ready (JetStream recovered its streams before that)."""
        return b"Server is ready" in self.log_path.read_bytes()[-200_000:]

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def connections(self) -> list[dict[str, Any]]:
        """Every client connection the server knows, open or closed (its monitoring endpoint
        ``/connz``; ``monitor=True``), with its counters: ``in_msgs`` is what the client sent."""
        assert self.monitor, "started without monitor=True"
        url = f"http://127.0.0.1:{self.monitor_port}/connz?state=all&limit=100000"
        with urllib.request.urlopen(url, timeout=10) as answer:
            found: list[dict[str, Any]] = json.load(answer).get("connections") or []
        return found

    def sent_by(self) -> Counter[str]:
        """Messages each named client sent to the server (requests, publishes and
        acknowledgements alike), summed over its connections, open or closed."""
        sent: Counter[str] = Counter()
        for connection in self.connections():
            sent[str(connection.get("name", ""))] += int(connection.get("in_msgs", 0))
        return sent

    def leaf_connected(self) -> bool:
        """A leaf node is connected to this hub, or this leaf to its hub (by the log)."""
        return b"Leafnode connection created" in self.log_path.read_bytes()

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown) or, with ``kill``, SIGKILL; wait at most
        ``STOP_TIMEOUT`` seconds, then kill it anyway."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or kill) the server and start it again on the same port with the same store."""
        self.stop(kill=kill)
        # The log accumulates: "Server is ready" of the first start must not count again.
        self.log_path.rename(self.log_path.with_suffix(f".{time.monotonic_ns()}.log"))
        self.start()

    def close(self) -> None:
        self.stop()
        if self._owns_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(check: object, *, timeout: float, what: str) -> None:
    """Poll ``check()`` every 50 ms until it is true; ``AssertionError`` naming ``what`` after
    ``timeout`` seconds (a bound on a wait, never a timed assertion)."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)
