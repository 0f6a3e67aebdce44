"""The change feed: order, cursors, pages, echo suppression, epochs, cost."""

from __future__ import annotations

from typing import Any

import pytest

from configsync.models import NodeClock, ReplicatedRecord
from configsync.replication.errors import CursorError
from configsync.replication.selectors.feed import cursor_parse, feed_page
from configsync.replication.services.apply import changes_apply
from configsync.services.node import node_id
from configsync.services.system_config import system_config_set
from tests.support.replication import REMOTE, remote_change

pytestmark = pytest.mark.django_db


def all_changes(cursor: str = "", limit: int = 2, exclude: str = "") -> tuple[list[str], str]:
    keys: list[str] = []
    for _ in range(100):
        page = feed_page(node=node_id(), cursor=cursor, limit=limit, exclude_node=exclude)
        keys += [c["key"] for c in page.changes]
        cursor = page.next_cursor
        if not page.has_more:
            return keys, cursor
    raise AssertionError("feed did not end")


def test_pages_come_in_sequence_order_and_end() -> None:
    for key in ["C", "A", "B", "D", "E"]:
        system_config_set(key=key, value="1")
    system_config_set(key="A", value="2")  # A moves to the end
    keys, cursor = all_changes()
    assert keys == ["C", "B", "D", "E", "A"]
    page = feed_page(node=node_id(), cursor=cursor, limit=2)
    assert page.changes == [] and not page.has_more and page.next_cursor == cursor
    system_config_set(key="F", value="1")
    assert [c["key"] for c in feed_page(node=node_id(), cursor=cursor, limit=2).changes] == ["F"]


def test_changes_received_from_the_requester_are_not_sent_back() -> None:
    system_config_set(key="MINE", value="1")
    changes_apply(changes=[remote_change("THEIRS")], source_node=REMOTE, source_name="p")
    system_config_set(key="MINE2", value="1")
    keys, cursor = all_changes(limit=1, exclude=REMOTE)
    assert keys == ["MINE", "MINE2"]
    assert cursor_parse(cursor).seq == NodeClock.objects.get().last_seq
    assert all_changes(exclude="node-else")[0] == ["MINE", "THEIRS", "MINE2"]


@pytest.mark.parametrize("bad", ["abc", "1.2.3", "-1", "zz.5", "1 ", "ABC.1", "9" * 40])
def test_cursors_that_do_not_parse_are_refused(bad: str) -> None:
    with pytest.raises(CursorError):
        feed_page(node=node_id(), cursor=bad, limit=10)


def test_a_cursor_from_another_epoch_starts_over() -> None:
    system_config_set(key="A", value="1")
    system_config_set(key="B", value="1")
    page = feed_page(node=node_id(), cursor="0123abcd.1", limit=10)
    assert page.reset and [c["key"] for c in page.changes] == ["A", "B"]
    current = feed_page(node=node_id(), cursor="", limit=10).next_cursor
    epoch = cursor_parse(current).epoch
    ahead = feed_page(node=node_id(), cursor=f"{epoch}.999", limit=10)  # a restored, older database
    assert ahead.reset and len(ahead.changes) == 2
    same = feed_page(node=node_id(), cursor=f"{epoch}.1", limit=10)
    assert not same.reset and [c["key"] for c in same.changes] == ["B"]


def test_feed_cost_grows_with_changes_not_records(
    django_assert_max_num_queries: Any,
) -> None:
    for i in range(60):
        system_config_set(key=f"K{i}", value="1")
    cursor = feed_page(node=node_id(), cursor="", limit=1000).next_cursor
    system_config_set(key="NEW", value="1")
    # Constant number of queries whatever the number of records (clock, rows, conflicts).
    with django_assert_max_num_queries(4):
        page = feed_page(node=node_id(), cursor=cursor, limit=500)
    assert [c["key"] for c in page.changes] == ["NEW"]
    assert ReplicatedRecord.objects.count() == 61


def test_losers_that_are_not_peer_versions_are_not_relayed() -> None:
    """A .env file's losing version (pseudo timestamp, path origin) stays on its node."""
    from configsync.models import Conflict

    system_config_set(key="A", value="db")
    rec = ReplicatedRecord.objects.get(natural_key="A")
    winner = {"hlc": rec.hlc, "origin": rec.origin_node, "deleted": False, "data": rec.data}
    Conflict.objects.create(
        model_label="configsync.systemconfig",
        natural_key="A",
        source="env-file:/srv/app/.env",
        local_version=winner,
        remote_version={
            "hlc": "1732000000000:00000000:env-file",
            "origin": "env-file:/srv/app/.env",
            "deleted": False,
            "data": rec.data,
        },
        winner="local",
    )
    item = feed_page(node=node_id(), cursor="", limit=10).changes[0]
    assert item["key"] == "A" and item["losers"] == []
