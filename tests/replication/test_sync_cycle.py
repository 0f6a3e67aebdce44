"""One sync cycle: checkpoints, resumption after interruption, no echo, failures recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from configsync.models import (
    Peer,
    PeerCheckpoint,
    QuarantinedChange,
    ReplicatedRecord,
    SyncRun,
    SystemConfig,
)
from configsync.replication.errors import TransportError
from configsync.replication.hlc import physical_now_ms
from configsync.replication.page import FeedPage
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.replication.services.diff import sync_diff
from configsync.replication.transports.http import HttpPeerTransport
from configsync.services.system_config import system_config_set
from tests.factories import PeerFactory
from tests.support.replication import LOCAL, REMOTE, SECRET, remote_change, stamp
from tests.support.scripted_peer import ScriptedPeer

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer() -> Peer:
    return PeerFactory(name="remote")


@pytest.fixture
def small_pages(settings: Any) -> None:
    settings.CONFIGSYNC_SYNC_BATCH_SIZE = 2


def cursor(peer: Peer, direction: str) -> str:
    return PeerCheckpoint.objects.get(peer=peer, direction=direction).cursor


def test_pull_applies_every_page_and_saves_the_checkpoint(peer: Peer, small_pages: None) -> None:
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change(f"K{i}") for i in range(5)])
    result = sync_cycle(peer_id=peer.pk, push=False, transport=remote)
    assert result.ok and result.pulled == 5 and result.conflicts == 0
    assert SystemConfig.objects.count() == 5
    assert cursor(peer, "pull") == "5"
    peer.refresh_from_db()
    assert peer.node_id == REMOTE  # learned on first contact
    again = sync_cycle(peer_id=peer.pk, push=False, transport=remote)
    assert again.pulled == 0 and again.stale == 0
    run = SyncRun.objects.order_by("-id").first()
    assert run is not None and run.ok and run.finished_at is not None


def test_an_interrupted_pull_resumes_without_loss_or_duplicates(
    peer: Peer, small_pages: None
) -> None:
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change(f"K{i}") for i in range(5)])
    remote.fail_pull_at = 2  # the peer drops after the first page
    with pytest.raises(SyncCycleError) as info:
        sync_cycle(peer_id=peer.pk, transport=remote)
    assert info.value.result.pulled == 2
    assert cursor(peer, "pull") == "2"
    assert SystemConfig.objects.count() == 2
    failed = SyncRun.objects.get()
    assert not failed.ok and "unreachable" in failed.error and failed.pulled == 2
    seqs = dict(ReplicatedRecord.objects.values_list("natural_key", "seq"))
    remote.fail_pull_at = None
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert result.pulled == 3 and result.stale == 0
    assert SystemConfig.objects.count() == 5
    assert {
        k: s for k, s in ReplicatedRecord.objects.values_list("natural_key", "seq") if k in seqs
    } == seqs


def test_a_page_applied_twice_after_a_lost_checkpoint_is_stale(peer: Peer) -> None:
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("A"), remote_change("B")])
    sync_cycle(peer_id=peer.pk, push=False, transport=remote)
    PeerCheckpoint.objects.filter(peer=peer).update(cursor="")  # as if the save were lost
    result = sync_cycle(peer_id=peer.pk, push=False, transport=remote)
    assert result.pulled == 0 and result.stale == 2
    assert SystemConfig.objects.count() == 2


def test_push_sends_local_changes_but_not_the_peers_own(peer: Peer, small_pages: None) -> None:
    system_config_set(key="MINE1", value="1")
    changes_apply(changes=[remote_change("THEIRS")], source_node=REMOTE, source_name="remote")
    system_config_set(key="MINE2", value="1")
    remote = ScriptedPeer(node=REMOTE)
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    pushed = [c["key"] for batch in remote.pushed for c in batch]
    assert pushed == ["MINE1", "MINE2"] and result.pushed == 2
    assert all(c["origin"] == LOCAL for batch in remote.pushed for c in batch)
    again = sync_cycle(peer_id=peer.pk, transport=remote)
    assert again.pushed == 0 and sum(len(batch) for batch in remote.pushed) == 2


def test_a_failed_push_keeps_the_checkpoint_and_is_sent_again(peer: Peer) -> None:
    system_config_set(key="A", value="1")
    remote = ScriptedPeer(node=REMOTE)
    remote.fail_push_at = 1
    with pytest.raises(SyncCycleError, match="503"):
        sync_cycle(peer_id=peer.pk, transport=remote)
    assert cursor(peer, "push") == ""
    remote.fail_push_at = None
    assert sync_cycle(peer_id=peer.pk, transport=remote).pushed == 1


def test_a_down_peer_fails_only_its_own_cycle_and_is_recorded(peer: Peer) -> None:
    other = PeerFactory(name="other")
    down = ScriptedPeer(node=REMOTE)
    down.fail_pull_at = 1
    with pytest.raises(SyncCycleError):
        sync_cycle(peer_id=peer.pk, transport=down)
    healthy = ScriptedPeer(node="node-other", feed=[remote_change("X", node="node-other")])
    assert sync_cycle(peer_id=other.pk, transport=healthy).ok
    assert SyncRun.objects.get(peer=peer).ok is False
    assert SyncRun.objects.get(peer=other).ok is True


def test_garbage_and_future_changes_are_quarantined_and_the_cycle_moves_on(
    peer: Peer,
) -> None:
    future = remote_change("F", hlc=stamp(REMOTE, wall=physical_now_ms() + 3_600_000))
    remote = ScriptedPeer(node=REMOTE, feed=[{"model": "nope"}, future, remote_change("OK")])
    sync_cycle(peer_id=peer.pk, transport=remote, push=False)
    assert cursor(peer, "pull") != ""
    assert list(ReplicatedRecord.objects.values_list("natural_key", flat=True)) == ["OK"]
    reasons = sorted(QuarantinedChange.objects.values_list("reason", flat=True))
    assert len(reasons) == 2 and reasons[0].startswith("clock skew")


def test_a_feed_that_does_not_advance_is_garbage(peer: Peer) -> None:
    remote = ScriptedPeer(node=REMOTE)
    remote.page_override = FeedPage(node=REMOTE, changes=[], next_cursor="", has_more=True)
    with pytest.raises(SyncCycleError, match="garbage"):
        sync_cycle(peer_id=peer.pk, transport=remote)


@pytest.mark.parametrize(
    ("node", "next_cursor"),
    [
        pytest.param(REMOTE, "9" * 101, id="cursor-too-long"),
        pytest.param(REMOTE, "1\x00", id="cursor-nul"),
        pytest.param(REMOTE, "1 2", id="cursor-space"),
        pytest.param("n" * 65, "1", id="node-too-long"),
        pytest.param("node\x00x", "1", id="node-nul"),
    ],
)
def test_a_page_whose_cursor_or_node_this_node_cannot_keep_is_garbage(
    peer: Peer, node: str, next_cursor: str
) -> None:
    """Kept as they are, such a cursor or node id fails on PostgreSQL (an "internal error" every
    cycle) and is stored truncated nowhere: refused as garbage, nothing applied or saved."""
    remote = ScriptedPeer(node=REMOTE)
    remote.page_override = FeedPage(
        node=node, changes=[remote_change("K")], next_cursor=next_cursor, has_more=False
    )
    with pytest.raises(SyncCycleError, match="garbage"):
        sync_cycle(peer_id=peer.pk, transport=remote)
    assert not ReplicatedRecord.objects.exists()
    assert PeerCheckpoint.objects.get(peer=peer, direction="pull").cursor == ""
    assert Peer.objects.get(pk=peer.pk).node_id in ("", REMOTE)


def test_a_peer_with_our_own_node_id_is_refused(peer: Peer) -> None:
    with pytest.raises(SyncCycleError, match="this node itself"):
        sync_cycle(peer_id=peer.pk, transport=ScriptedPeer(node=LOCAL))


def test_clock_skew_seen_is_recorded(peer: Peer) -> None:
    remote = ScriptedPeer(node=REMOTE)
    remote.clock_ms = physical_now_ms() + 42_000
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert result.skew_ms is not None and 40_000 < result.skew_ms < 44_000
    assert SyncRun.objects.get().skew_ms == result.skew_ms


def test_diff_compares_versions(peer: Peer) -> None:
    shared = remote_change("SAME")
    changes_apply(changes=[shared], source_node=REMOTE, source_name="remote")
    system_config_set(key="HERE", value="1")
    remote = ScriptedPeer(
        node=REMOTE, feed=[shared, remote_change("THERE"), remote_change("GONE", deleted=True)]
    )
    diff = sync_diff(peer_id=peer.pk, transport=remote)
    assert diff.same == 2
    assert [e["key"] for e in diff.only_local] == ["HERE"]
    assert [e["key"] for e in diff.only_remote] == ["THERE"]
    assert not diff.in_sync


def test_conflicts_pushed_before_the_peer_was_known_are_filed_under_its_name(peer: Peer) -> None:
    from configsync.models import Conflict

    system_config_set(key="K", value="local")
    later = stamp(REMOTE, wall=physical_now_ms() + 1000)
    # The peer pushed to us before we ever pulled from it: we only knew its node id.
    changes_apply(changes=[remote_change("K", hlc=later)], source_node=REMOTE, source_name=REMOTE)
    assert Conflict.objects.get().source == REMOTE
    sync_cycle(peer_id=peer.pk, transport=ScriptedPeer(node=REMOTE))
    assert Conflict.objects.get().source == "remote"


class ClosingPeer(ScriptedPeer):
    """A scripted peer that records whether the cycle released it."""

    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_cycle_closes_the_transport_it_opened_even_when_it_fails(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = ClosingPeer(node=REMOTE)
    opened.fail_pull_at = 1
    monkeypatch.setattr("configsync.replication.services.link.transport_for", lambda _peer: opened)

    with pytest.raises(SyncCycleError):
        sync_cycle(peer_id=peer.pk)

    assert opened.closed


def test_a_transport_passed_in_is_left_open_for_its_owner(peer: Peer) -> None:
    given = ClosingPeer(node=REMOTE)

    sync_cycle(peer_id=peer.pk, transport=given)
    sync_diff(peer_id=peer.pk, transport=given)

    assert not given.closed


@pytest.mark.parametrize("clock_ms", [10**20, -(10**20), 2**63])
def test_a_peer_clock_no_database_can_hold_is_garbage_and_the_run_is_recorded(
    peer: Peer, clock_ms: int
) -> None:
    """A signed peer answering an absurd ``clock_ms`` (beyond a 64-bit integer) must not crash
    the cycle when its skew is recorded: the run fails with a reason and is recorded."""
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("K")])
    remote.clock_ms = clock_ms
    with pytest.raises(SyncCycleError, match="clock"):
        sync_cycle(peer_id=peer.pk, transport=remote)
    run = SyncRun.objects.get(peer=peer)
    assert run.finished_at is not None and run.ok is False and "clock" in run.error


@contextmanager
def hostile_peer(status: int, body: bytes) -> Iterator[HttpPeerTransport]:
    """A signed peer outside this machine (a bare HTTP server) answering every request with
    ``status`` and ``body``; yields a transport to it."""

    class Hostile(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HttpPeerTransport(
            name="hostile",
            base_url=f"http://127.0.0.1:{server.server_address[1]}",
            node=LOCAL,
            secret=SECRET,
            timeout=5,
        )
    finally:
        server.shutdown()
        server.server_close()


def test_a_hostile_peers_refusal_text_is_recorded_storable(peer: Peer) -> None:
    """A peer refusing with a reason that holds NUL and a lone surrogate: the cycle fails with
    that reason escaped, and the run is recorded (the raw text fails on PostgreSQL and, for the
    surrogate, on SQLite)."""
    body = json.dumps({"detail": "no \x00 way \ud800"}).encode()
    with hostile_peer(400, body) as link, pytest.raises(SyncCycleError, match="refused"):
        sync_cycle(peer_id=peer.pk, transport=link)
    run = SyncRun.objects.get(peer=peer)
    assert run.finished_at is not None and run.ok is False
    assert "\x00" not in run.error and "\\u0000" in run.error
    run.error.encode()  # no lone surrogate


def test_a_page_nested_deeper_than_the_json_decoder_goes_is_garbage(peer: Peer) -> None:
    """The standard decoder raises ``RecursionError`` (not ``ValueError``) past its depth."""
    with hostile_peer(200, b"[" * 100_000) as link, pytest.raises(SyncCycleError, match="garbage"):
        sync_cycle(peer_id=peer.pk, transport=link)
    assert SyncRun.objects.get(peer=peer).finished_at is not None


def test_pull_never_asks_for_more_than_this_node_accepts_in_one_batch(
    peer: Peer, settings: Any
) -> None:
    """A batch size set above this node's ``MAX_PUSH_BATCH`` (a peer with a larger cap answers
    that many): every pulled page must still be one this node applies, or the pull is refused
    on every cycle and never moves."""
    settings.CONFIGSYNC_SYNC_BATCH_SIZE = 5
    settings.CONFIGSYNC_MAX_PUSH_BATCH = 2
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change(f"K{i}") for i in range(6)])
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert result.pulled == 6
    assert ReplicatedRecord.objects.count() == 6


def test_push_splits_batches_a_peer_with_a_smaller_cap_refuses(peer: Peer, settings: Any) -> None:
    """A peer whose ``MAX_PUSH_BATCH`` (or upload limit) is below this node's batch refuses the
    whole batch with a 400 on every cycle: the pusher splits it until the peer takes it, so
    this node's writes still reach that peer."""

    class SmallCap(ScriptedPeer):
        def push(self, changes: list[dict[str, Any]]) -> Any:
            if len(changes) > 2:
                raise TransportError(
                    f"peer scripted refused: HTTP 400: batch of {len(changes)} exceeds the "
                    "maximum of 2",
                    status=400,
                )
            return super().push(changes)

    settings.CONFIGSYNC_SYNC_BATCH_SIZE = 5
    for i in range(7):
        system_config_set(key=f"K{i}", value="v")
    remote = SmallCap(node=REMOTE)
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert result.pushed == 7
    assert sorted(c["key"] for batch in remote.pushed for c in batch) == [f"K{i}" for i in range(7)]
