"""Restores and rollbacks detected by the replication log (sessions recorded on both sides).

The peer is a ``ScriptedPeer`` keeping its replication log in memory (the HTTP endpoints are
covered by tests/replication/transports/test_contract.py, two real nodes restored from a backup by
tests/multinode/test_time_and_restore.py). A "backup" here is a copy of this node's checkpoint
rows, put back as a restore would.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from configsync.models import Peer, PeerCheckpoint, ReplicatedRecord
from configsync.replication.errors import TransportError
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.services.system_config import system_config_set
from tests.factories import PeerFactory
from tests.support.replication import REMOTE, remote_change
from tests.support.scripted_peer import ScriptedPeer

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer() -> Peer:
    return PeerFactory(name="remote")


def sessions(peer: Peer) -> dict[str, str]:
    return dict(PeerCheckpoint.objects.filter(peer=peer).values_list("direction", "session"))


def backup(peer: Peer) -> list[dict[str, Any]]:
    return list(PeerCheckpoint.objects.filter(peer=peer).values("direction", "cursor", "session"))


def restore(peer: Peer, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        PeerCheckpoint.objects.filter(peer=peer, direction=row["direction"]).update(
            cursor=row["cursor"], session=row["session"]
        )


def pushed_keys(remote: ScriptedPeer) -> list[str]:
    return [change["key"] for batch in remote.pushed for change in batch]


def test_each_direction_is_recorded_on_both_sides(peer: Peer) -> None:
    system_config_set(key="MINE", value="1")
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("THEIRS")])
    sync_cycle(peer_id=peer.pk, transport=remote)
    ours = sessions(peer)
    assert set(ours) == {"pull", "push"} and all(len(s) == 32 for s in ours.values())
    assert {d: e.session for d, e in remote.log.items()} == ours
    assert remote.log["pull"].cursor == "1"


def test_an_idle_cycle_records_nothing_and_stays_cheap(peer: Peer) -> None:
    system_config_set(key="MINE", value="1")
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("THEIRS")])
    sync_cycle(peer_id=peer.pk, transport=remote)
    sync_cycle(peer_id=peer.pk, transport=remote)  # pushes over what it pulled: cursor moves
    before = (remote.log_records, sessions(peer))
    remote.pull_calls = remote.push_calls = 0
    with CaptureQueriesContext(connection) as queries:
        result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert result.ok and not result.restarted
    assert (remote.log_records, sessions(peer)) == before  # no new session: nothing moved
    assert (remote.pull_calls, remote.push_calls, remote.log_reads) == (1, 0, 0)  # one request
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert all("configsync_syncrun" in sql for sql in writes)  # only the run's own row


def test_a_restored_node_starts_over_and_sends_back_what_the_peer_sent(peer: Peer) -> None:
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("THEIRS")])
    system_config_set(key="OLD", value="1")
    sync_cycle(peer_id=peer.pk, transport=remote)
    saved = backup(peer)  # the backup is taken here
    system_config_set(key="NEW", value="1")
    sync_cycle(peer_id=peer.pk, transport=remote)
    assert "NEW" in pushed_keys(remote)
    restore(peer, saved)
    remote.pushed.clear()
    remote.pull_echoes.clear()

    result = sync_cycle(peer_id=peer.pk, transport=remote)

    # Only the push moved since the backup: the pull direction's sessions still agree.
    assert result.restarted == ["push"] and remote.pull_echoes == [False]
    # From the beginning, and including the record the peer sent us (received_from = peer).
    assert ReplicatedRecord.objects.get(natural_key="THEIRS").received_from == REMOTE
    assert sorted(pushed_keys(remote)) == ["NEW", "OLD", "THEIRS"]
    assert {d: e.session for d, e in remote.log.items()} == sessions(peer)
    remote.pushed.clear()
    again = sync_cycle(peer_id=peer.pk, transport=remote)
    assert not again.restarted and pushed_keys(remote) == []


def test_a_restored_peer_is_detected_by_its_older_log(peer: Peer) -> None:
    remote = ScriptedPeer(node=REMOTE, feed=[remote_change("THEIRS")])
    system_config_set(key="MINE", value="1")
    sync_cycle(peer_id=peer.pk, transport=remote)
    remote.log.clear()  # the peer's database went back to before it ever met us
    remote.pushed.clear()
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert sorted(result.restarted) == ["pull", "push"]
    assert sorted(pushed_keys(remote)) == ["MINE", "THEIRS"]


class LosesTheAnswer(ScriptedPeer):
    """Records the session, then the answer never arrives (a crash between the two records)."""

    lose = True

    def log_record(self, *, direction: str, session: str, cursor: str) -> None:
        super().log_record(direction=direction, session=session, cursor=cursor)
        if self.lose:
            raise TransportError("peer scripted unreachable: ReadTimeout")


def test_a_crash_between_the_two_records_costs_one_full_cycle(peer: Peer) -> None:
    remote = LosesTheAnswer(node=REMOTE, feed=[remote_change("THEIRS")])
    system_config_set(key="MINE", value="1")
    with pytest.raises(SyncCycleError, match="ReadTimeout"):
        sync_cycle(peer_id=peer.pk, transport=remote)
    assert remote.log["pull"].session != sessions(peer)["pull"]
    remote.lose = False
    remote.pushed.clear()
    over = sync_cycle(peer_id=peer.pk, transport=remote)
    assert over.restarted == ["pull"] and over.stale == 1  # re-delivered: nothing lost
    assert sync_cycle(peer_id=peer.pk, transport=remote).restarted == []
    assert set(ReplicatedRecord.objects.values_list("natural_key", flat=True)) == {
        "MINE",
        "THEIRS",
    }


class KeepsNoLog(ScriptedPeer):
    """A peer of an older release: no ``/sync/log`` endpoint, no log in its feed pages."""

    def pull(self, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False) -> Any:
        return super().pull(cursor, limit, echoes=echoes)

    def log_get(self) -> Any:
        raise TransportError("peer scripted refused: HTTP 404: Not Found", status=404)


def test_a_peer_without_a_log_is_synced_without_the_check(peer: Peer) -> None:
    remote = KeepsNoLog(node=REMOTE, feed=[remote_change("THEIRS")])
    system_config_set(key="MINE", value="1")
    first = sync_cycle(peer_id=peer.pk, transport=remote)
    again = sync_cycle(peer_id=peer.pk, transport=remote)
    assert first.ok and first.pulled == 1 and again.ok and not again.restarted
    assert remote.log_records == 0 and sessions(peer) == {"pull": "", "push": ""}


def test_a_failing_log_read_fails_the_cycle_before_anything_moves(peer: Peer) -> None:
    class Down(KeepsNoLog):
        def log_get(self) -> Any:
            raise TransportError("peer scripted refused: HTTP 503: down", status=503)

    remote = Down(node=REMOTE, feed=[remote_change("THEIRS")])
    with pytest.raises(SyncCycleError, match="503"):
        sync_cycle(peer_id=peer.pk, transport=remote)
    assert not ReplicatedRecord.objects.exists() and remote.pushed == []
    assert PeerCheckpoint.objects.filter(peer=peer).exclude(cursor="").count() == 0


def test_start_over_is_idempotent_for_what_was_applied(peer: Peer) -> None:
    change = remote_change("THEIRS")
    changes_apply(changes=[change], source_node=REMOTE, source_name="remote")
    remote = ScriptedPeer(node=REMOTE, feed=[change])
    PeerCheckpoint.objects.create(peer=peer, direction="pull", cursor="1", session="ab" * 16)
    result = sync_cycle(peer_id=peer.pk, transport=remote)
    assert "pull" in result.restarted and result.stale == 1 and result.pulled == 0
    # The page fetched from the old cursor is dropped; the peer is asked for what we sent, too.
    assert remote.pull_echoes == [False, True]
    assert ReplicatedRecord.objects.count() == 1
