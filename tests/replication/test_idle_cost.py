"""What an idle cycle costs: at most two queries on each side and one request, at any size.

Counts, not times (times are in ``bench/idle.py``). The client side runs against the scripted
peer of the cycle tests; the server side is the signed request an idle cycle sends (its first
feed page, carrying the log), answered by this node's real endpoint. Both are measured at two
sizes of the database: the counts must be the same.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from configsync.models import Peer
from configsync.replication.selectors.feed import feed_last_cursor
from configsync.replication.services.cycle import sync_cycle
from configsync.replication.services.sync import peer_sync
from configsync.replication.signing import sign
from configsync.services.system_config import system_config_set
from tests.factories import PeerFactory
from tests.support.replication import REMOTE, SECRET, remote_change
from tests.support.scripted_peer import ScriptedPeer

pytestmark = pytest.mark.django_db


def _grow(records: int) -> None:
    start = Peer.objects.count()  # a fresh prefix per call
    for i in range(records):
        system_config_set(key=f"GROW_{start}_{i}", value="1")


def _client_idle_queries(peer: Peer, remote: ScriptedPeer) -> list[str]:
    sync_cycle(peer_id=peer.pk, transport=remote)  # catch up both ways
    sync_cycle(peer_id=peer.pk, transport=remote)  # records what the first one moved
    remote.pull_calls = remote.push_calls = remote.log_reads = remote.log_records = 0
    with CaptureQueriesContext(connection) as queries:
        result = peer_sync(peer_id=peer.pk, transport=remote)
    assert result is not None and result.ok and (result.pulled, result.pushed) == (0, 0)
    requests = (remote.pull_calls, remote.push_calls, remote.log_reads, remote.log_records)
    assert requests == (1, 0, 0, 0)  # one request: the first feed page, carrying the log
    return [q["sql"] for q in queries.captured_queries]


def test_an_idle_cycle_costs_two_queries_here_whatever_the_size() -> None:
    counts = []
    for records in (3, 120):
        _grow(records)
        peer = PeerFactory()
        remote = ScriptedPeer(node=f"{REMOTE}-{records}", feed=[remote_change("THEIRS")])
        sql = _client_idle_queries(peer, remote)
        assert sql[0].startswith("SELECT") and sql[1].startswith("INSERT")  # read, the run
        counts.append(len(sql))
    assert counts == [2, 2]


def _signed_get(path: str) -> Any:
    headers = sign(secret=SECRET, method="GET", path=path, body=b"", node=REMOTE)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return APIClient().get(path, **extra)


def test_the_peer_answers_an_idle_page_in_two_queries_whatever_the_size() -> None:
    counts = []
    for records in (3, 120):
        _grow(records)
        path = f"/api/v1/sync/changes?since={feed_last_cursor()}&limit=500&log=true"
        with CaptureQueriesContext(connection) as queries:
            response = _signed_get(path)
        assert response.status_code == 200, response.content
        body = json.loads(response.content)
        assert body["changes"] == [] and body["has_more"] is False
        assert body["next_cursor"] == feed_last_cursor() and "log" in body
        assert body["hlc_ms"] is not None
        counts.append(len(queries))
    assert counts == [2, 2]  # the nonce, then the feed's head, the clock and the log at once


def test_the_idle_page_answers_what_the_feed_would() -> None:
    """The shortcut and the full read agree: same page for the cursor at the end, and a cursor
    one change behind still gets that change."""
    system_config_set(key="A", value="1")
    system_config_set(key="B", value="1")
    end = feed_last_cursor()
    epoch, seq = end.split(".")
    behind = _signed_get(f"/api/v1/sync/changes?since={epoch}.{int(seq) - 1}&limit=500")
    assert [c["key"] for c in behind.json()["changes"]] == ["B"]
    assert behind.json()["next_cursor"] == end
    idle = _signed_get(f"/api/v1/sync/changes?since={end}&limit=500")
    assert idle.json()["next_cursor"] == end and idle.json()["changes"] == []
    bare = _signed_get(f"/api/v1/sync/changes?since={seq}&limit=500")  # no epoch: full read
    assert bare.json()["next_cursor"] == end and bare.json()["changes"] == []
