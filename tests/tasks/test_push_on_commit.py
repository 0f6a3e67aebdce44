"""Push on commit: a per-peer push flag and a single-flight pusher, through the real task code.

Celery runs eagerly (``task_always_eager``: every ``apply_async`` runs in the enqueuing thread),
the writes commit for real (``transaction=True``), and the peer is a small HTTP server speaking
the sync endpoints over real HTTP as another node: it records every push and, at a chosen
request, makes more writes *on this node* from its own thread, the way writes land while a
worker is pushing. Those writes enqueue their own push (the real ``sync_peer``), which finds the
pusher holding the peer and leaves; what the tests prove is that the holder carries them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connections

from configsync import tasks
from configsync.models import Peer, PeerCheckpoint, SyncRun
from configsync.replication.hlc import physical_now_ms
from configsync.replication.services.sync import push_flag_raised
from configsync.services.system_config import system_config_set
from tests.factories import PeerFactory
from tests.support.replication import REMOTE, use_replication_settings

pytestmark = pytest.mark.django_db(transaction=True)


class ScriptedHttpPeer(ThreadingHTTPServer):
    """Another node at ``url``: applies nothing, answers every item ``applied``, keeps a
    replication log (recording a push's checkpoint with it, unless ``records_with_push`` is off,
    as on a peer of an earlier release), and runs ``hooks["METHOD path"]`` once before
    answering the first such request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pushes: list[list[str]] = []
        self.requests: list[str] = []
        self.log: dict[str, dict[str, str]] = {}
        self.hooks: dict[str, Callable[[], None]] = {}
        self.records_with_push = True
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def pushed_keys(self) -> list[str]:
        return [key for batch in self.pushes for key in batch]


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedHttpPeer
    protocol_version = "HTTP/1.1"  # keep-alive, as the transport's session expects

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        try:
            hook = self.server.hooks.pop(f"{method} {parts.path}", None)
            if hook is not None:
                hook()
        finally:
            connections.close_all()  # this thread's writes used their own connection
        with self.server.lock:
            self.server.requests.append(f"{method} {parts.path}")
            answer = self._payload(method, parts.path, query, body)
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _payload(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        peer = self.server
        answer: dict[str, Any] = {"node": REMOTE, "clock_ms": physical_now_ms()}
        entries = list(peer.log.values())
        if path.endswith("/push"):
            changes = body["changes"]
            peer.pushes.append([c["key"] for c in changes])
            answer["results"] = [
                {"index": i, "model": c["model"], "key": c["key"], "status": "applied"}
                for i, c in enumerate(changes)
            ]
            record = body.get("record") if peer.records_with_push else None
            if record is not None:
                held = peer.log.get("push", {}).get("session", "")
                answer["recorded"] = held == record["replaces"]
                if answer["recorded"]:
                    peer.log["push"] = {"direction": "push", **record}
                    entries = list(peer.log.values())
            if query.get("log") == ["true"]:
                answer["log"] = entries
        elif path.endswith("/log") and method == "POST":
            peer.log[body["direction"]] = body
            answer["entry"] = body
        elif path.endswith("/log"):
            answer["entries"] = entries
        else:  # the feed: nothing to pull
            answer.update(changes=[], next_cursor="0", has_more=False, log=entries)
        return answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def remote(settings: Any) -> Iterator[ScriptedHttpPeer]:
    use_replication_settings(settings)
    server = ScriptedHttpPeer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def eager() -> Iterator[None]:
    """Every enqueued task runs at once, in the thread that enqueued it."""
    conf = tasks.sync_peer.app.conf
    before = conf.task_always_eager
    conf.task_always_eager = True
    try:
        yield
    finally:
        conf.task_always_eager = before


@pytest.fixture
def peer(remote: ScriptedHttpPeer) -> Peer:
    return PeerFactory(name="remote", base_url=remote.url)


def _busy_tasks(caplog: pytest.LogCaptureFixture) -> int:
    return sum("another cycle holds it" in r.getMessage() for r in caplog.records)


def test_a_burst_landing_during_a_push_is_carried_by_one_more_push(
    remote: ScriptedHttpPeer, peer: Peer, eager: None, caplog: pytest.LogCaptureFixture
) -> None:
    burst = [f"DURING_{i:02d}" for i in range(25)]

    def writes_during_the_push() -> None:
        for key in burst:
            system_config_set(key=key, value="x")

    remote.hooks["POST /api/v1/sync/push"] = writes_during_the_push
    with caplog.at_level(logging.INFO, logger="configsync.tasks"):
        system_config_set(key="FIRST", value="1")  # its push runs here, at once

    assert remote.pushes == [["FIRST"], burst]  # all arrived, in order, each once
    # The first of the burst raised the flag and enqueued its push, which found the peer held
    # and left; the other 24 found the flag raised and enqueued nothing.
    assert _busy_tasks(caplog) == 1
    assert SyncRun.objects.filter(peer=peer, ok=True).count() == 2
    assert not push_flag_raised(peer.pk)


def test_a_push_on_write_is_one_request_that_records_the_checkpoint(
    remote: ScriptedHttpPeer, peer: Peer, eager: None
) -> None:
    system_config_set(key="FIRST", value="1")
    system_config_set(key="SECOND", value="2")
    assert remote.pushes == [["FIRST"], ["SECOND"]]
    assert remote.requests == ["POST /api/v1/sync/push"] * 2  # the log rides on the push
    checkpoint = PeerCheckpoint.objects.get(peer=peer, direction="push")
    assert remote.log["push"]["session"] == checkpoint.session
    assert remote.log["push"]["cursor"] == checkpoint.cursor


def test_a_write_landing_after_the_pushers_last_read_is_still_pushed(
    remote: ScriptedHttpPeer, peer: Peer, eager: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The lost wakeup: the write commits after the pusher read our feed and took the flag,
    while it still holds the peer (here recording the cycle's session with a peer of an earlier
    release, the cycle's last step). Its own push finds the peer held and leaves; the flag it
    raised is seen when the pusher lets go."""
    remote.records_with_push = False
    remote.hooks["POST /api/v1/sync/log"] = lambda: system_config_set(key="LATE", value="x")
    with caplog.at_level(logging.INFO, logger="configsync.tasks"):
        system_config_set(key="FIRST", value="1")

    assert remote.pushes == [["FIRST"], ["LATE"]]
    assert _busy_tasks(caplog) == 1
    assert not push_flag_raised(peer.pk)
    # Both cycles recorded their session on the peer, as any cycle that moves its cursor does.
    checkpoint = PeerCheckpoint.objects.get(peer=peer, direction="push")
    assert remote.log["push"]["session"] == checkpoint.session


def test_a_peer_whose_log_disagrees_gets_everything_again(
    remote: ScriptedHttpPeer, peer: Peer, eager: None
) -> None:
    """The peer was restored: its log lost our session. The push's record is refused, and the
    cycle starts the direction over (everything, once more) before recording a new session."""
    system_config_set(key="FIRST", value="1")
    remote.log.clear()  # the peer's database went back to before it ever met us
    remote.pushes.clear()
    system_config_set(key="SECOND", value="2")
    assert remote.pushes == [["SECOND"], ["FIRST", "SECOND"]]
    checkpoint = PeerCheckpoint.objects.get(peer=peer, direction="push")
    assert remote.log["push"]["session"] == checkpoint.session


def test_without_peers_a_write_enqueues_nothing(
    remote: ScriptedHttpPeer, eager: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="configsync.tasks"):
        system_config_set(key="ALONE", value="1")
    assert remote.pushes == [] and not SyncRun.objects.exists()
