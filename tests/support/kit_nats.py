"""The NATS transport's kit for the contract suite (see ``tests.support.kits``).

The remote is the nats-server with JetStream on 127.0.0.1:4222 (``.ci/run`` starts it when it
is installed; the tests skip, saying so, when nothing answers there). Every test gets a fresh
replication group of its own (``t<hex>``: its own stream and key-value bucket on the shared
server), created through a link with the group's secret and deleted afterwards, whatever the
test did. ``refused`` is a link with another ``CONFIGSYNC_SYNC_SECRET``: the group's verifier
refuses it before it publishes anything. ``down`` is a server URL on a free port where nothing
listens. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from configsync.replication.transports.base import Transport
from configsync.replication.transports.nats import _LOOP, NatsTransport, kv_bucket, stream_name
from multinode.cluster import free_port
from tests.support.kits import TransportKit
from tests.support.replication import SECRET

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
NATS_URL = f"nats://{NATS_HOST}:{NATS_PORT}"
WRONG_SECRET = "sk-CANARY-not-the-group-secret"


def nats_reachable() -> bool:
    """Whether something accepts connections on 127.0.0.1:4222 (JetStream is checked by use)."""
    try:
        with socket.create_connection((NATS_HOST, NATS_PORT), timeout=1):
            return True
    except OSError:
        return False


def skip_without_nats() -> None:
    if not nats_reachable():
        pytest.skip(
            "no nats-server on 127.0.0.1:4222 (install nats-server and start it with -js, as "
            ".ci/run does, to run the NATS transport tests)"
        )


@dataclass
class NatsKit:
    """Links to one fresh group's stream on the shared server."""

    group: str
    kind: str = "nats"
    opened: list[NatsTransport] = field(default_factory=list)

    def transport(self, *, node: str, **options: Any) -> NatsTransport:
        options.setdefault("url", NATS_URL)
        options.setdefault("secret", SECRET)
        link = NatsTransport(name="nats", node=node, group=self.group, timeout=5, **options)
        self.opened.append(link)
        return link

    def link(self, *, node: str) -> Transport:
        return self.transport(node=node)

    def down(self, *, node: str) -> Transport:
        return self.transport(node=node, url=f"nats://127.0.0.1:{free_port()}")

    def refused(self, *, node: str) -> Transport:
        return self.transport(node=node, secret=WRONG_SECRET)

    def raw(self, coroutine_of: Any) -> Any:
        """Run ``coroutine_of(js)`` with a JetStream context of its own (to read the stream as
        it is stored, or to delete it)."""
        import nats

        async def run() -> Any:
            nc = await nats.connect(servers=[NATS_URL], connect_timeout=5, allow_reconnect=False)
            try:
                return await coroutine_of(nc.jetstream(timeout=5))
            finally:
                await nc.close()

        return _LOOP.run(run(), timeout=30)

    def close(self) -> None:
        for link in self.opened:
            link.close()

        async def delete(js: Any) -> None:
            from nats.js.errors import NotFoundError

            for name in (stream_name(self.group), f"KV_{kv_bucket(self.group)}"):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)

        self.raw(delete)


@pytest.fixture
def nats_kit() -> Iterator[TransportKit]:
    skip_without_nats()
    kit = NatsKit(group=f"t{uuid.uuid4().hex[:12]}")
    setup = kit.transport(node="kit-setup")
    setup.log_get()  # the group exists, with the right secret, before any test link uses it
    try:
        yield kit
    finally:
        kit.close()
