"""The NATS transport under faults, with in-process nodes (``InProcessNatsGroup``) on a private
nats-server: the server killed and started again in the middle of a node's catch-up, a node
that dies mid-page (nothing committed, nothing acknowledged) or after committing a page but
before acknowledging it, and changes published twice (inside the server's duplicate window,
and again with new message ids, as after it). Every node ends with identical digests and the
values last written; nothing is applied twice (a re-delivered change reads as stale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from configsync.replication.transports.nats import MSG_ID_HEADER, stream_name
from tests.support.inprocess import InProcessNatsGroup, NodeCrash
from tests.support.nats_node import nats_databases, nats_group, nats_server
from tests.support.nats_server import NatsServer

__all__ = ["nats_databases", "nats_group", "nats_server"]  # the fixtures, for this module

pytestmark = pytest.mark.chaos

APPLY_STEP = r'^UPDATE "configsync_nodeclock"'
"""A statement of ``changes_apply`` after a page's rows are written and before it commits."""


def _same_everywhere(group: InProcessNatsGroup) -> None:
    digests = group.digests()
    assert len(set(digests.values())) == 1, digests


def _small_pages(group: InProcessNatsGroup, name: str, size: int) -> None:
    group.members[name].node.extra_settings["CONFIGSYNC_SYNC_BATCH_SIZE"] = size


def test_the_server_killed_mid_catch_up(
    nats_group: InProcessNatsGroup, nats_server: NatsServer
) -> None:
    for name in ("a", "b", "c"):
        nats_group.join(name)
    nats_group.stop("c")
    for i in range(40):
        nats_group.write("a" if i % 2 else "b", f"RESTART_{i}", f"v{i}")
    nats_group.settle()

    _small_pages(nats_group, "c", 10)
    restarted: list[int] = []

    def kill_the_server_after_two_pages(execute: Any, sql: Any, *args: Any) -> Any:
        answer = execute(sql, *args)
        if str(sql).startswith('UPDATE "configsync_nodeclock"') and not restarted:
            pages = getattr(kill_the_server_after_two_pages, "pages", 0) + 1
            kill_the_server_after_two_pages.pages = pages  # type: ignore[attr-defined]
            if pages == 2:
                nats_server.restart(kill=True)
                restarted.append(pages)
        return answer

    member = nats_group.members["c"]
    member.node.connection().execute_wrappers.append(kill_the_server_after_two_pages)
    try:
        # The third page's fetch finds the pooled connection dead: the transport drops it and
        # runs the call once more on a fresh one, so the catch-up goes on from the page it
        # committed instead of failing the cycle.
        nats_group.restart("c")
    finally:
        member.node.connection().execute_wrappers.remove(kill_the_server_after_two_pages)
    assert restarted == [2]

    # The stream survived the kill (its store is on disk); every link reconnects on its next
    # call, every bell by itself; c holds each change once.
    nats_group.write("a", "AFTER_RESTART", "x")
    nats_group.settle()
    assert len([k for k in nats_group.values("c") if k.startswith("RESTART_")]) == 40
    assert nats_group.values("c") == nats_group.values("a")
    _same_everywhere(nats_group)


def test_a_node_that_dies_mid_page_or_before_acknowledging(
    nats_group: InProcessNatsGroup,
) -> None:
    for name in ("a", "b"):
        nats_group.join(name)
    for i in range(5):
        nats_group.write("a", f"CRASH_{i}", f"v{i}")

    # b dies mid-page: the page rolls back, nothing was acknowledged.
    b = nats_group.members["b"]
    with b.node.fault_on(APPLY_STEP, kind="crash") as fault, pytest.raises(NodeCrash):
        nats_group.cycle("b")
    assert fault.fired == 1
    nats_group.stop("b")
    assert "CRASH_0" not in nats_group.values("b")
    nats_group.restart("b")
    assert b.last is not None and b.last.pulled == 5
    assert nats_group.values("b") == nats_group.values("a")

    # b commits the next page but dies before it acknowledges it (before recording the pull).
    for i in range(3):
        nats_group.write("a", f"UNACKED_{i}", f"w{i}")
    original: Callable[..., None] = b.link.log_record

    def die(**_: Any) -> None:
        raise NodeCrash("died before acknowledging")

    b.link.log_record = die  # type: ignore[method-assign]
    with pytest.raises(NodeCrash):
        nats_group.cycle("b")
    b.link.log_record = original  # type: ignore[method-assign]
    nats_group.stop("b")
    assert "UNACKED_2" in nats_group.values("b")  # committed
    nats_group.restart("b")  # the messages come again, at or below its cursor: skipped
    assert b.last is not None and b.last.pulled == 0 and b.last.ok
    nats_group.settle()
    _same_everywhere(nats_group)


def test_duplicated_publishes_are_stored_once_or_read_as_stale(
    nats_group: InProcessNatsGroup,
) -> None:
    import nats

    from configsync.replication.transports.nats import _LOOP

    for name in ("a", "b", "c"):
        nats_group.join(name)
    for i in range(4):
        nats_group.write("a", f"DUP_{i}", f"v{i}")
    nats_group.settle()
    before = nats_group.stream_last_seq()

    async def republish(new_ids: bool) -> int:
        nc = await nats.connect(servers=[nats_group.url])
        try:
            js = nc.jetstream(timeout=10)
            stream = stream_name(nats_group.group)
            for seq in range(1, before + 1):
                stored = await js.get_msg(stream, seq)
                headers = dict(stored.headers or {})
                if new_ids:  # as after the duplicate window: the server stores it again
                    headers[MSG_ID_HEADER] = f"again-{seq}"
                await js.publish(str(stored.subject), bytes(stored.data or b""), headers=headers)
            return int((await js.stream_info(stream)).state.last_seq)
        finally:
            await nc.close()

    # Inside the duplicate window: the server drops every one of them.
    assert _LOOP.run(republish(False), timeout=60) == before
    # With new ids: stored again, rung again, read again, applied nowhere (stale).
    assert _LOOP.run(republish(True), timeout=60) == 2 * before
    values = nats_group.values("b")
    nats_group.settle()
    for name in ("b", "c"):
        member = nats_group.members[name]
        assert member.last is not None and member.last.stale == before and not member.last.pulled
        assert nats_group.values(name) == values
    _same_everywhere(nats_group)
