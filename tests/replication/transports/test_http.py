"""The HTTP peer transport against a real server (the parts of its behaviour a shared medium does
not have: the peer applies and answers per item, signatures, clocks). The contract every
transport keeps is ``test_contract.py``.

HTTP: pytest-django's ``live_server`` (a real HTTP server in a thread, sharing the test
database). The "remote" node is that server; the client signs as another node id, as a peer
would. Later transports (external database, object storage) join the ``transport`` fixture.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from configsync.models import ReplicatedRecord, ReplicationLog, SystemConfig
from configsync.replication.errors import TransportError
from configsync.replication.page import FeedPage, LogEntry
from configsync.replication.transports.base import PushResult, ReplicationLogAnswer, Transport
from configsync.replication.transports.http import HttpPeerTransport
from configsync.services.system_config import system_config_set
from tests.support.replication import (
    LOCAL,
    OTHER,
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


@pytest.fixture
def transport(live_server: Any) -> Factory:
    """``transport(secret=..., down=False, garbage=False, node=REMOTE)``: a transport to the
    live node, signing as peer ``node``."""

    def make(
        *, secret: str = SECRET, down: bool = False, garbage: bool = False, node: str = REMOTE
    ) -> Transport:
        url = live_server.url
        if down:
            url = f"http://127.0.0.1:{_free_port()}"
        elif garbage:
            url = f"{live_server.url}/admin/login"  # answers HTML, not the API
        return HttpPeerTransport(name="live", base_url=url, node=node, secret=secret, timeout=5)

    return make


def test_pull_pages_through_the_feed(transport: Factory) -> None:
    for key in "ABC":
        system_config_set(key=key, value="1")
    link = transport()
    first = link.pull("", 2)
    assert isinstance(first, FeedPage)
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
    with pytest.raises(TransportError):
        transport(garbage=True).log_get()
    with pytest.raises(TransportError):
        transport(garbage=True).log_record(direction="pull", session="ab" * 16, cursor="")


def test_no_secret_configured_refuses_to_send(transport: Factory) -> None:
    with pytest.raises(TransportError, match="SYNC_SECRET"):
        transport(secret="").pull("", 10)


# --- replication log, echoes, clocks ----------------------------------------------------------


def test_the_replication_log_is_read_and_recorded_per_caller(transport: Factory) -> None:
    link = transport()
    empty = link.log_get()
    assert isinstance(empty, ReplicationLogAnswer) and empty.node == LOCAL
    assert empty.entries == [] and empty.clock_ms is not None
    link.log_record(direction="pull", session="ab" * 16, cursor="e1.7")
    link.log_record(direction="push", session="cd" * 16, cursor="9")
    link.log_record(direction="pull", session="ef" * 16, cursor="e1.8")  # replaces
    answer = link.log_get()
    assert answer.entry("pull") == LogEntry("pull", "ef" * 16, "e1.8")
    assert answer.entry("push") == LogEntry("push", "cd" * 16, "9")
    # Keyed by the caller's (signed) node id: another peer sees only its own entries.
    assert ReplicationLog.objects.filter(node_id=REMOTE).count() == 2
    assert transport(node=OTHER).log_get().entries == []


@pytest.mark.parametrize(
    ("direction", "session", "cursor"),
    [("sideways", "ab" * 16, ""), ("pull", "NOT-HEX", ""), ("pull", "ab" * 16, "x\u0000y")],
)
def test_a_bad_log_record_is_refused_and_changes_nothing(
    transport: Factory, direction: str, session: str, cursor: str
) -> None:
    with pytest.raises(TransportError) as info:
        transport().log_record(direction=direction, session=session, cursor=cursor)
    assert info.value.status == 400
    assert not ReplicationLog.objects.exists()


def test_pull_leaves_out_what_the_caller_sent_unless_echoes(transport: Factory) -> None:
    link = transport()
    link.push([remote_change("FROM_CALLER")])
    system_config_set(key="LOCAL_ONE", value="1")
    assert [c["key"] for c in link.pull("", 10).changes] == ["LOCAL_ONE"]
    with_echoes = link.pull("", 10, echoes=True)
    assert [c["key"] for c in with_echoes.changes] == ["FROM_CALLER", "LOCAL_ONE"]
    assert with_echoes.hlc_ms is not None  # the last timestamp its clock issued


def test_the_peers_clock_is_learned_from_every_answer_refusals_included(
    transport: Factory,
) -> None:
    link = transport()
    link.pull("", 1)
    assert link.last_skew_ms is not None and abs(link.last_skew_ms) < 5_000
    refused = transport(secret="not-the-group-secret")
    with pytest.raises(TransportError):
        refused.pull("", 1)
    # A 403 carries no clock_ms: the HTTP Date header tells it (second resolution).
    assert refused.last_skew_ms is not None and abs(refused.last_skew_ms) < 5_000


def test_a_feed_page_can_carry_the_callers_log(transport: Factory) -> None:
    link = transport()
    assert link.pull("", 10).log is None  # not asked: not sent
    assert link.pull("", 10, with_log=True).log == []
    link.log_record(direction="push", session="ab" * 16, cursor="3")
    assert link.pull("", 10, with_log=True).log == [LogEntry("push", "ab" * 16, "3")]
    assert transport(node=OTHER).pull("", 10, with_log=True).log == []
