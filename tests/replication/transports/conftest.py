"""The ``kit`` fixture: one :class:`tests.support.kits.TransportKit` per transport, so the
contract suite runs the same tests against every implementation (constance's backend test mixin
is the model)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from configsync.replication.transports.base import Transport
from configsync.replication.transports.http import HttpPeerTransport
from tests.support.kit_bucket import bucket_kit  # noqa: F401 - fixture
from tests.support.kit_database import database_kit  # noqa: F401 - fixture
from tests.support.kit_nats import nats_kit  # noqa: F401 - fixture
from tests.support.kits import TransportKit
from tests.support.replication import SECRET, use_replication_settings

TRANSPORT_KINDS = ("http", "database", "bucket", "nats")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpKit:
    """The live test server is the shared remote: a configsync node that applies what it is
    sent and serves it in its feed."""

    kind = "http"

    def __init__(self, url: str) -> None:
        self.url = url

    def link(self, *, node: str) -> Transport:
        return HttpPeerTransport(
            name="live", base_url=self.url, node=node, secret=SECRET, timeout=5
        )

    def down(self, *, node: str) -> Transport:
        url = f"http://127.0.0.1:{_free_port()}"
        return HttpPeerTransport(name="live", base_url=url, node=node, secret=SECRET, timeout=5)

    def refused(self, *, node: str) -> Transport:
        return HttpPeerTransport(
            name="live", base_url=self.url, node=node, secret="not-the-group-secret", timeout=5
        )


@pytest.fixture
def http_kit(live_server: Any, settings: Any) -> TransportKit:
    use_replication_settings(settings)  # the server is node LOCAL
    return HttpKit(live_server.url)


@pytest.fixture(params=TRANSPORT_KINDS)
def kit(request: pytest.FixtureRequest) -> TransportKit:
    """Every transport in turn."""
    return request.getfixturevalue(f"{request.param}_kit")  # type: ignore[no-any-return]
