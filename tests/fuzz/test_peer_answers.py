"""Fuzzed answers of a peer (``transports/http.py`` parsing into ``page.py``'s ``FeedPage``,
push results and replication logs), read through the real ``requests`` stack: a transport
adapter stands in for the other node and answers whatever bytes, status and ``Date`` header the
example draws.

Properties: every call of the transport returns its typed answer or raises ``TransportError``;
a whole pull cycle against such a peer either succeeds or fails with ``SyncCycleError``, and
records nothing the answer did not name — a refused answer changes no record, feed or clock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from configsync.models import Peer, SystemConfig
from configsync.replication.errors import TransportError
from configsync.replication.page import FeedPage
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.replication.services.diff import sync_diff
from configsync.replication.transports.base import PushRecord, PushResult, ReplicationLogAnswer
from configsync.replication.transports.http import HttpPeerTransport
from tests.fuzz.strategies import FUZZ, JSON_VALUE, TEXT, json_bytes, mutated, mutated_bytes
from tests.support.fuzz import state
from tests.support.replication import LOCAL, REMOTE, SECRET, stamp

pytestmark = pytest.mark.django_db

BASE_URL = "http://peer.invalid"
LOG = [{"direction": "pull", "session": "ab" * 8, "cursor": "e1.5"}]


class CannedPeer(BaseAdapter):
    """Answers every request with the drawn status, headers and body (no socket)."""

    def __init__(self, answers: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__()
        self.answers = answers

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = (request.path_url or "").split("?")[0].rsplit("/", 1)[-1]
        status, headers, body = self.answers.get(path) or self.answers["*"]
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(headers)
        response._content = body
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def transport(answers: dict[str, tuple[int, dict[str, str], bytes]]) -> HttpPeerTransport:
    session = requests.Session()
    session.mount("http://", CannedPeer(answers))
    return HttpPeerTransport(
        name="peer", base_url=BASE_URL, node=LOCAL, secret=SECRET, session=session
    )


def valid_page(changes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "node": REMOTE,
        "changes": changes,
        "next_cursor": "e1.5",
        "has_more": False,
        "reset": False,
        "clock_ms": 1_700_000_000_000,
        "hlc_ms": None,
        "log": LOG,
    }


VALID_PUSH = {"node": REMOTE, "results": [{"status": "applied"}], "clock_ms": 1, "log": LOG}
VALID_LOG = {"node": REMOTE, "entries": LOG, "clock_ms": 1, "hlc_ms": 2}


def answers(valid: dict[str, Any]) -> st.SearchStrategy[tuple[int, dict[str, str], bytes]]:
    body = st.one_of(
        st.binary(max_size=120),
        JSON_VALUE.map(json_bytes),
        mutated(valid).map(json_bytes),
        mutated_bytes(json.dumps(valid).encode()),
        st.just(json.dumps(valid).encode()),
    )
    headers = st.one_of(
        st.just({}),
        st.fixed_dictionaries({"Date": st.one_of(TEXT, st.just("Tue, 01 Dec 2026 12:00:00 GMT"))}),
        st.fixed_dictionaries(
            {"Content-Type": st.sampled_from(["text/html", "application/json; charset=latin-1"])}
        ),
    )
    status = st.sampled_from([200, 200, 200, 201, 304, 400, 401, 403, 404, 500, 503])
    return st.tuples(status, headers, body)


@FUZZ
@given(data=st.data())
def test_every_call_returns_its_answer_or_raises_transport_error(data: st.DataObject) -> None:
    page = data.draw(answers(valid_page([{"model": "x", "key": "k"}])))
    link = transport(
        {
            "changes": page,
            "digest": page,
            "push": data.draw(answers(VALID_PUSH)),
            "log": data.draw(answers(VALID_LOG)),
            "*": page,
        }
    )
    record = PushRecord("cd" * 8, "e1.5", "")
    calls = [
        (lambda: link.pull("e1.2", 10, with_log=True), FeedPage),
        (lambda: link.pull("", 10), FeedPage),
        (lambda: link.digest("", 10), FeedPage),
        (lambda: link.push([{"model": "x"}]), PushResult),
        (lambda: link.push_with_log([{"model": "x"}], record=record), PushResult),
        (link.log_get, ReplicationLogAnswer),
        (lambda: link.log_record(direction="push", session="cd" * 8, cursor="e1.5"), type(None)),
    ]
    for call, kind in calls:
        try:
            answer = call()
        except TransportError as exc:
            assert str(exc)
            continue
        assert isinstance(answer, kind)
        if isinstance(answer, FeedPage):
            assert isinstance(answer.changes, list) and isinstance(answer.next_cursor, str)
            assert answer.log is None or all(isinstance(e.cursor, str) for e in answer.log)


@settings(FUZZ, max_examples=max(FUZZ.max_examples // 3, 1))
@given(data=st.data())
def test_a_pull_cycle_records_only_what_a_usable_answer_names(
    valid_batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    page = data.draw(answers(valid_page(valid_batch[:4])))
    log = data.draw(
        st.one_of(st.just((200, {}, json.dumps(VALID_LOG).encode())), answers(VALID_LOG))
    )
    with transaction.atomic():
        peer = Peer.objects.create(name="peer", base_url=BASE_URL, node_id=REMOTE)
        before = state()
        try:
            sync_cycle(
                peer_id=peer.pk, pull=True, push=False, transport=transport({"log": log, "*": page})
            )
        except SyncCycleError as exc:
            assert "sk-CANARY" not in str(exc)
            if exc.result.pulled == 0 and exc.result.conflicts == 0:
                after = state()
                assert after["feed"] == before["feed"] and after["clock"] == before["clock"]
        named = _named(page[2])
        after = state()
        changed = {
            (row[0], row[1])
            for row in set(map(_hashable, after["feed"])) - set(map(_hashable, before["feed"]))
        }
        assert changed <= named
        transaction.set_rollback(True)


def _named(body: bytes) -> set[tuple[str, str]]:
    """The records an answer names (model label, key), whatever else it holds."""
    try:
        sent = json.loads(body)
    except ValueError:
        return set()
    changes = sent.get("changes") if isinstance(sent, dict) else None
    return {
        (str(c.get("model")).lower(), str(c.get("key")))
        for c in (changes if isinstance(changes, list) else [])
        if isinstance(c, dict)
    }


def _hashable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for v in row)


def test_the_valid_answers_are_read() -> None:
    page = (200, {}, json.dumps(valid_page([{"model": "x", "key": "k", "hlc": stamp()}])).encode())
    link = transport(
        {
            "push": (200, {}, json.dumps(VALID_PUSH).encode()),
            "log": (200, {}, json.dumps(VALID_LOG).encode()),
            "*": page,
        }
    )
    assert link.pull("", 10, with_log=True).log[0].cursor == "e1.5"
    assert link.push([{"model": "x"}]).results == [{"status": "applied"}]
    assert link.log_get().entries[0].session == "ab" * 8


@pytest.mark.parametrize("changes", [0, 2], ids=["empty", "with-changes"])
def test_a_feed_whose_cursor_does_not_advance_fails_the_cycle_and_the_diff_at_once(
    valid_batch: list[dict[str, Any]], changes: int
) -> None:
    """Found by this fuzzer: a peer answering ``has_more`` with the cursor it was asked for and
    some changes was read again and again (``MAX_PAGES`` = 100,000 times: a hang)."""
    page = valid_page(valid_batch[:changes])
    page.update(has_more=True, next_cursor="")
    answered = (200, {}, json.dumps(page).encode())
    link = transport({"log": (200, {}, json.dumps(VALID_LOG).encode()), "*": answered})
    peer = Peer.objects.create(name="peer", base_url=BASE_URL, node_id=REMOTE)
    with pytest.raises(SyncCycleError, match="feed does not advance"):
        sync_cycle(peer_id=peer.pk, pull=True, push=False, transport=link)
    with pytest.raises(TransportError, match="feed does not advance"):
        sync_diff(peer_id=peer.pk, transport=link)
    # The first page's changes are not kept: the cycle refused it before applying it.
    assert not SystemConfig.objects.exists()
