"""The contract every ``Transport`` keeps, run against each implementation with a real server.

HTTP: pytest-django's ``live_server`` (a real HTTP server in a thread, sharing the test
database). The "remote" node is that server; the client signs as another node id, as a peer
would. Later transports (external database, object storage) join the ``transport`` fixture.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from configsync.models import ReplicatedRecord, SystemConfig
from configsync.replication.errors import TransportError
from configsync.services.system_config import system_config_set
from configsync.transports.base import ChangePage, PushResult, Transport
from configsync.transports.http import HttpPeerTransport
from tests.replication.conftest import (
    LOCAL,
    REMOTE,
    SECRET,
    remote_change,
    use_replication_settings,
)

pytestmark = pytest.mark.django_db(transaction=True)

Factory = Callable[..., Transport]


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    use_replication_settings(settings)  # the server is node LOCAL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["http"])
def transport(request: pytest.FixtureRequest, live_server: Any) -> Factory:
    """``transport(secret=..., down=False, garbage=False)``: a transport to the live node."""

    def make(*, secret: str = SECRET, down: bool = False, garbage: bool = False) -> Transport:
        url = live_server.url
        if down:
            url = f"http://127.0.0.1:{_free_port()}"
        elif garbage:
            url = f"{live_server.url}/admin/login"  # answers HTML, not the API
        return HttpPeerTransport(name="live", base_url=url, node=REMOTE, secret=secret, timeout=5)

    return make


def test_pull_pages_through_the_feed(transport: Factory) -> None:
    for key in "ABC":
        system_config_set(key=key, value="1")
    link = transport()
    first = link.pull("", 2)
    assert isinstance(first, ChangePage)
    assert first.node == LOCAL and [c["key"] for c in first.changes] == ["A", "B"]
    assert first.has_more and first.clock_ms is not None
    second = link.pull(first.next_cursor, 2)
    assert [c["key"] for c in second.changes] == ["C"] and not second.has_more
    assert link.pull(second.next_cursor, 2).changes == []


def test_push_applies_atomically_and_answers_per_item(transport: Factory) -> None:
    link = transport()
    batch = [remote_change("A", "1"), remote_change("B", deleted=True)]
    answer = link.push(batch)
    assert isinstance(answer, PushResult) and answer.node == LOCAL
    assert [r["status"] for r in answer.results] == ["applied", "applied"]
    assert [r["status"] for r in link.push(batch).results] == ["stale", "stale"]
    assert SystemConfig.objects.get(key="A").value == "1"


def test_a_bad_item_is_quarantined_and_a_refused_batch_is_a_transport_error(
    transport: Factory, settings: Any
) -> None:
    bad = remote_change("B")
    bad["data"]["value_type"] = "complex"
    answer = transport().push([remote_change("A"), bad])
    assert [r["status"] for r in answer.results] == ["applied", "quarantined"]
    assert "value_type" in answer.results[1]["reason"]
    settings.CONFIGSYNC_MAX_PUSH_BATCH = 1
    with pytest.raises(TransportError) as info:
        transport().push([remote_change("C"), remote_change("D")])
    assert info.value.status == 400 and "exceeds" in str(info.value)
    assert list(ReplicatedRecord.objects.values_list("natural_key", flat=True)) == ["A"]


def test_digest_lists_versions_only(transport: Factory, canary: str) -> None:
    system_config_set(key="S", value=canary, is_sensitive=True)
    page = transport().digest("", 10)
    assert [c["key"] for c in page.changes] == ["S"]
    assert canary not in repr(page) and "enc1:" not in repr(page)


def test_a_wrong_secret_is_refused(transport: Factory) -> None:
    with pytest.raises(TransportError) as info:
        transport(secret="not-the-group-secret").pull("", 10)
    assert info.value.status == 403
    with pytest.raises(TransportError) as info:
        transport(secret="not-the-group-secret").push([remote_change("A")])
    assert info.value.status == 403
    assert not ReplicatedRecord.objects.exists()


def test_a_peer_that_is_down_is_a_transport_error(transport: Factory) -> None:
    with pytest.raises(TransportError, match="unreachable"):
        transport(down=True).pull("", 10)


def test_a_peer_answering_garbage_is_a_transport_error(transport: Factory) -> None:
    with pytest.raises(TransportError):
        transport(garbage=True).pull("", 10)
    with pytest.raises(TransportError):
        transport(garbage=True).push([remote_change("A")])


def test_no_secret_configured_refuses_to_send(transport: Factory) -> None:
    with pytest.raises(TransportError, match="SYNC_SECRET"):
        transport(secret="").pull("", 10)
