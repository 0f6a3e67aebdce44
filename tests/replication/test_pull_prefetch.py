"""The pull fetches the next page while it applies the current one (HTTP peers), losing nothing.

The peer is a small HTTP server serving a fixed feed in pages as another node would (real HTTP,
the real transport and cycle); it notes, for each page asked for, how many of the feed's
records this node had committed at that moment (on PostgreSQL), and can fail a given request.
The writes commit for real (``transaction=True``), so the server's own connection sees them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection, connections

from configsync.models import Peer, PeerCheckpoint, ReplicatedRecord, SystemConfig
from configsync.replication.hlc import physical_now_ms
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from tests.factories import PeerFactory
from tests.support.replication import REMOTE, remote_change

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = 40
FEED = 5 * PAGE - 7  # five pages, the last one short


class FeedPeer(ThreadingHTTPServer):
    def __init__(self, feed: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.feed = feed
        self.asked: list[tuple[int, int]] = []  # (from, records committed here when asked)
        self.asked_changed = threading.Condition()
        self.fail_request: int | None = None
        self.log: dict[str, dict[str, str]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FeedPeer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        start = int((query.get("since") or ["0"])[0] or 0)
        limit = int(query["limit"][0])
        committed = -1  # SQLite's in-memory test database locks a table another thread writes
        if connection.vendor == "postgresql":
            try:
                committed = SystemConfig.objects.filter(key__startswith="FEED_").count()
            finally:
                connections.close_all()
        with self.server.asked_changed:
            self.server.asked.append((start, committed))
            self.server.asked_changed.notify_all()
        if self.server.fail_request == len(self.server.asked):
            self._send(503, {"detail": "down for a moment"})
            return
        items = self.server.feed[start : start + limit]
        end = start + len(items)
        self._send(
            200,
            {
                "node": REMOTE,
                "changes": items,
                "next_cursor": str(end),
                "has_more": end < len(self.server.feed),
                "clock_ms": physical_now_ms(),
                "log": list(self.server.log.values()),
            },
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length))
        self.server.log[body["direction"]] = body
        self._send(200, {"node": REMOTE, "entry": body, "clock_ms": physical_now_ms()})

    def _send(self, status: int, answer: dict[str, Any]) -> None:
        raw = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def remote(settings: Any) -> Iterator[FeedPeer]:
    settings.CONFIGSYNC_SYNC_BATCH_SIZE = PAGE
    server = FeedPeer([remote_change(f"FEED_{i:03d}", str(i)) for i in range(FEED)])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def peer(remote: FeedPeer) -> Peer:
    return PeerFactory(name="remote", base_url=remote.url)


def test_the_next_page_is_asked_for_while_this_one_is_applied(
    remote: FeedPeer, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page is applied only once the peer has been asked for the next one (the apply waits
    for that request, bounded): without the prefetch the wait ends unanswered and the test fails;
    with it, the order no longer depends on how the threads are scheduled."""
    from configsync.replication.services import cycle

    apply = cycle.changes_apply

    def apply_once_the_next_page_is_asked(**kwargs: Any) -> Any:
        checkpoint = kwargs.get("checkpoint")
        following = int(checkpoint[1]) if checkpoint else FEED
        if following < FEED:
            with remote.asked_changed:
                asked = remote.asked_changed.wait_for(
                    lambda: any(start == following for start, _ in remote.asked), timeout=30
                )
            assert asked, f"page {following} was not asked for while the page before it waited"
        return apply(**kwargs)

    monkeypatch.setattr(cycle, "changes_apply", apply_once_the_next_page_is_asked)
    result = sync_cycle(peer_id=peer.pk, push=False)
    assert result.ok and result.pulled == FEED and result.stale == 0
    assert [start for start, _ in remote.asked] == [0, 40, 80, 120, 160]
    if connection.vendor == "postgresql":
        # Each next page was asked for before the previous page's records were committed here.
        assert [committed for _, committed in remote.asked[1:]] == [0, 40, 80, 120]
    assert PeerCheckpoint.objects.get(peer=peer, direction="pull").cursor == str(FEED)
    assert ReplicatedRecord.objects.filter(natural_key__startswith="FEED_").count() == FEED


def test_a_page_that_fails_ahead_stops_the_pull_after_the_pages_before_it(
    remote: FeedPeer, peer: Peer
) -> None:
    remote.fail_request = 3  # the third page, asked for while the second is applied
    with pytest.raises(SyncCycleError) as failed:
        sync_cycle(peer_id=peer.pk, push=False)
    assert "503" in str(failed.value) and failed.value.result.pulled == 2 * PAGE
    assert PeerCheckpoint.objects.get(peer=peer, direction="pull").cursor == str(2 * PAGE)
    assert SystemConfig.objects.filter(key__startswith="FEED_").count() == 2 * PAGE
    seqs = dict(ReplicatedRecord.objects.values_list("natural_key", "seq"))
    remote.fail_request = None
    again = sync_cycle(peer_id=peer.pk, push=False)
    assert again.pulled == FEED - 2 * PAGE and again.stale == 0  # resumed, nothing twice
    kept = dict(ReplicatedRecord.objects.values_list("natural_key", "seq"))
    assert {key: kept[key] for key in seqs} == seqs


def _record_checked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Per ``changes_apply`` call of the cycle: its batch size and whether the validation done
    ahead (``checked=``) still held for it."""
    from configsync.replication.services import cycle

    apply = cycle.changes_apply
    calls: list[tuple[int, bool]] = []

    def recording(**kwargs: Any) -> Any:
        checked = kwargs.get("checked")
        calls.append((len(kwargs["changes"]), bool(checked and checked.holds(kwargs["changes"]))))
        return apply(**kwargs)

    monkeypatch.setattr(cycle, "changes_apply", recording)
    return calls


def test_the_pages_fetched_ahead_are_validated_ahead(
    remote: FeedPeer, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page after the first (fetched with the cycle's log, in the cycle's thread) arrives
    validated by the prefetch thread, and applies exactly as the first."""
    calls = _record_checked(monkeypatch)
    result = sync_cycle(peer_id=peer.pk, push=False)
    assert result.ok and result.pulled == FEED and result.quarantined == 0
    assert calls == [
        (PAGE, False),
        (PAGE, True),
        (PAGE, True),
        (PAGE, True),
        (FEED - 4 * PAGE, True),
    ]
    assert SystemConfig.objects.filter(key__startswith="FEED_").count() == FEED


def test_a_validation_that_reads_the_database_runs_when_the_page_applies(
    remote: FeedPeer, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prefetch thread may not reach the database: a validation hook that queries is
    refused there (its page is checked again when applied, in the cycle's thread and
    transaction, after the pages before it), and the thread opens no connection."""
    main = threading.current_thread().name
    ran: list[tuple[str, bool]] = []

    def reads_the_database(instance: Any) -> None:
        try:
            SystemConfig.objects.filter(key=instance.key).exists()
        except Exception:
            ran.append((threading.current_thread().name, False))
            raise
        ran.append((threading.current_thread().name, True))
        instance.full_clean(exclude=["secret_value"], validate_unique=False)

    from configsync.replication import registry

    monkeypatch.setitem(registry._validators, "configsync.systemconfig", reads_the_database)
    calls = _record_checked(monkeypatch)
    result = sync_cycle(peer_id=peer.pk, push=False)
    assert result.ok and result.pulled == FEED and result.quarantined == 0
    assert [held for _, held in calls] == [False] * 5
    assert {thread for thread, ok in ran if ok} == {main}
    assert sum(ok for _, ok in ran) == FEED
    refused = [thread for thread, ok in ran if not ok]
    assert refused and all(name.startswith("configsync-prefetch") for name in refused)
