"""The contract every ``Transport`` keeps, run against each implementation with a real remote:
the HTTP peer (a live configsync node), the external database (a real PostgreSQL database) and
the bucket (a real S3-compatible server). See ``conftest.kit`` and ``tests.support.kits``.

Two writers (``REMOTE``, ``OTHER``) and a reader (``THIRD``) share one remote. What differs by
design is left to each transport's own tests (``test_http.py``: the peer applies and answers
``stale`` for a version it has; a medium stores and lets its readers decide).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from configsync.replication.errors import TransportError
from configsync.replication.page import FeedPage, LogEntry
from configsync.replication.transports.base import PushResult, ReplicationLogAnswer, Transport
from tests.support.kits import TransportKit
from tests.support.replication import OTHER, REMOTE, remote_change

pytestmark = pytest.mark.django_db(transaction=True)

THIRD = "node-third"
NODE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
STATUSES = {"applied", "stale", "conflict", "quarantined"}


@contextmanager
def opened(kit: TransportKit, node: str) -> Iterator[Transport]:
    link = kit.link(node=node)
    try:
        yield link
    finally:
        link.close()


def read_all(link: Transport, *, limit: int = 100, echoes: bool = False) -> list[dict[str, Any]]:
    """Every change the link's pull returns from the start, page by page."""
    changes: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(1000):
        page = link.pull(cursor, limit, echoes=echoes)
        changes.extend(page.changes)
        assert len(page.next_cursor) <= link.max_cursor_length
        cursor = page.next_cursor
        if not page.has_more:
            return changes
    raise AssertionError("the feed did not end")


def keys(changes: list[dict[str, Any]]) -> list[str]:
    return [c["key"] for c in changes]


def test_a_writers_changes_reach_another_node_page_by_page(kit: TransportKit) -> None:
    batch = [remote_change(k, f"v{k}", node=REMOTE) for k in ("A", "B", "C")]
    with opened(kit, REMOTE) as writer, opened(kit, THIRD) as reader:
        answer = writer.push(batch)
        assert isinstance(answer, PushResult) and NODE_ID.fullmatch(answer.node)
        assert [r["status"] for r in answer.results] == ["applied"] * 3
        first = reader.pull("", 2)
        assert isinstance(first, FeedPage) and first.node == answer.node
        assert keys(first.changes) == ["A", "B"] and first.has_more
        second = reader.pull(first.next_cursor, 2)
        assert keys(second.changes) == ["C"] and not second.has_more
        item = second.changes[0]
        assert item["hlc"] == batch[2]["hlc"] and item["origin"] == REMOTE
        assert item["data"]["value"] == "vC"
        idle = reader.pull(second.next_cursor, 2)
        assert idle.changes == [] and not idle.has_more


def test_two_writers_are_both_read_and_a_cursor_resumes_after_new_writes(
    kit: TransportKit,
) -> None:
    with (
        opened(kit, REMOTE) as one,
        opened(kit, OTHER) as two,
        opened(kit, THIRD) as reader,
    ):
        one.push([remote_change("A", node=REMOTE)])
        two.push([remote_change("B", node=OTHER)])
        page = reader.pull("", 100)
        assert sorted(keys(page.changes)) == ["A", "B"] and not page.has_more
        one.push([remote_change("C", node=REMOTE)])
        two.push([remote_change("D", node=OTHER)])
        later = reader.pull(page.next_cursor, 100)
        assert sorted(keys(later.changes)) == ["C", "D"]
        assert reader.pull(later.next_cursor, 100).changes == []


def test_pull_leaves_out_the_callers_own_changes_unless_echoes(kit: TransportKit) -> None:
    with opened(kit, REMOTE) as writer, opened(kit, OTHER) as other:
        writer.push([remote_change("MINE", node=REMOTE)])
        other.push([remote_change("THEIRS", node=OTHER)])
        assert keys(read_all(writer)) == ["THEIRS"]
        assert sorted(keys(read_all(writer, echoes=True))) == ["MINE", "THEIRS"]


def test_a_batch_sent_twice_leaves_the_same_versions(kit: TransportKit) -> None:
    batch = [remote_change("A", "1", node=REMOTE), remote_change("B", deleted=True, node=REMOTE)]
    with opened(kit, REMOTE) as writer, opened(kit, THIRD) as reader:
        writer.push(batch)
        again = writer.push(batch)
        assert {r["status"] for r in again.results} <= STATUSES
        seen = {(c["key"], c["hlc"], c["deleted"]) for c in read_all(reader)}
        assert seen == {(c["key"], c["hlc"], c["deleted"]) for c in batch}


def test_a_secret_travels_as_the_ciphertext_it_was_given(kit: TransportKit, canary: str) -> None:
    from configsync.replication.selectors.feed import feed_page
    from configsync.services.system_config import system_config_set

    system_config_set(key="S", value=canary, is_sensitive=True)
    item = next(c for c in feed_page(node="x", cursor="", limit=10).changes if c["key"] == "S")
    token = item["data"]["secret_value"]
    assert isinstance(token, str) and canary not in token
    # (For HTTP the remote is this very database: it already holds the record and serves it.)
    with opened(kit, REMOTE) as writer, opened(kit, THIRD) as reader:
        writer.push([item])
        (got,) = [c for c in read_all(reader) if c["key"] == "S"]
        assert got["data"]["secret_value"].startswith("enc") and canary not in repr(got)


def test_digest_lists_versions_without_values(kit: TransportKit, canary: str) -> None:
    with opened(kit, REMOTE) as writer, opened(kit, THIRD) as reader:
        writer.push([remote_change("A", canary, node=REMOTE)])
        page = reader.digest("", 10)
        assert keys(page.changes) == ["A"] and page.changes[0]["hlc"]
        assert canary not in repr(page.changes)


def test_the_replication_log_is_kept_per_node(kit: TransportKit) -> None:
    with opened(kit, REMOTE) as link, opened(kit, OTHER) as other:
        empty = link.log_get()
        assert isinstance(empty, ReplicationLogAnswer) and NODE_ID.fullmatch(empty.node)
        assert empty.entries == []
        link.log_record(direction="pull", session="ab" * 16, cursor="1")
        link.log_record(direction="push", session="cd" * 16, cursor="9")
        link.log_record(direction="pull", session="ef" * 16, cursor="2")  # replaces
        answer = link.log_get()
        assert answer.entry("pull") == LogEntry("pull", "ef" * 16, "2")
        assert answer.entry("push") == LogEntry("push", "cd" * 16, "9")
        assert other.log_get().entries == []
        carried = link.pull("", 10, with_log=True).log
        assert carried is not None
        assert sorted(carried, key=str) == sorted(answer.entries, key=str)
        assert other.pull("", 10, with_log=True).log == []


def test_the_remote_id_is_stable_and_not_the_callers(kit: TransportKit) -> None:
    with opened(kit, REMOTE) as one, opened(kit, OTHER) as two:
        ids = {one.log_get().node, two.log_get().node, one.pull("", 1).node}
        assert len(ids) == 1
        (remote,) = ids
        assert NODE_ID.fullmatch(remote) and remote not in (REMOTE, OTHER)


def test_an_unreachable_remote_is_a_transport_error(kit: TransportKit) -> None:
    link = kit.down(node=REMOTE)
    try:
        for call in (
            lambda: link.pull("", 10),
            lambda: link.push([remote_change("A", node=REMOTE)]),
            link.log_get,
        ):
            with pytest.raises(TransportError):
                call()
    finally:
        link.close()


def test_wrong_credentials_are_refused_and_store_nothing(kit: TransportKit) -> None:
    link = kit.refused(node=REMOTE)
    try:
        with pytest.raises(TransportError) as info:
            link.push([remote_change("A", node=REMOTE)])
        assert "not-the" not in str(info.value)
        with pytest.raises(TransportError):
            link.pull("", 10)
    finally:
        link.close()
    with opened(kit, THIRD) as reader:
        assert read_all(reader) == []


def test_a_cursor_of_garbage_is_refused(kit: TransportKit) -> None:
    with opened(kit, THIRD) as reader, pytest.raises(TransportError):
        reader.pull("x\u0000not-a-cursor", 10)
