"""A scripted remote peer: a ``Transport`` standing in for another node (outside this process).

It serves a fixed feed in pages, records what is pushed to it, and can be told to fail at a
given call — to test how the cycle behaves when the peer is down, answers garbage or drops
mid-cycle. Real HTTP between real nodes is tested in tests/replication/transports and
tests/multinode.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from configsync.replication.errors import TransportError
from configsync.replication.page import FeedPage, LogEntry
from configsync.replication.transports.base import PushResult, ReplicationLogAnswer, Transport


class ScriptedPeer(Transport):
    def __init__(self, *, node: str, feed: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.name = "scripted"
        self.node = node
        self.feed = list(feed or [])
        self.pushed: list[list[dict[str, Any]]] = []
        self.pull_calls = 0
        self.push_calls = 0
        self.fail_pull_at: int | None = None
        self.fail_push_at: int | None = None
        self.page_override: FeedPage | None = None
        self.clock_ms: int | None = None
        self.log: dict[str, LogEntry] = {}  # its replication log of our checkpoints
        self.log_records = 0
        self.log_reads = 0
        self.pull_echoes: list[bool] = []

    def log_get(self) -> ReplicationLogAnswer:
        self.log_reads += 1
        return ReplicationLogAnswer(
            node=self.node, entries=list(self.log.values()), clock_ms=self.clock_ms
        )

    def log_record(self, *, direction: str, session: str, cursor: str) -> None:
        self.log_records += 1
        self.log[direction] = LogEntry(direction=direction, session=session, cursor=cursor)

    def pull(
        self, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False
    ) -> FeedPage:
        page = self._page(cursor, limit, echoes=echoes)
        if with_log:
            return replace(page, log=list(self.log.values()))
        return page

    def _page(self, cursor: str, limit: int, *, echoes: bool) -> FeedPage:
        self.pull_calls += 1
        self.pull_echoes.append(echoes)
        if self.fail_pull_at is not None and self.pull_calls >= self.fail_pull_at:
            raise TransportError("peer scripted unreachable: ConnectionError")
        if self.page_override is not None:
            return self.page_override
        start = int(cursor or 0)
        items = self.feed[start : start + limit]
        end = start + len(items)
        return FeedPage(
            node=self.node,
            changes=items,
            next_cursor=str(end),
            has_more=end < len(self.feed),
            clock_ms=self.clock_ms,
        )

    def push(self, changes: list[dict[str, Any]]) -> PushResult:
        self.push_calls += 1
        if self.fail_push_at is not None and self.push_calls >= self.fail_push_at:
            raise TransportError("peer scripted refused: HTTP 503: down", status=503)
        self.pushed.append(changes)
        return PushResult(
            node=self.node,
            results=[
                {"index": i, "model": c["model"], "key": c["key"], "status": "applied"}
                for i, c in enumerate(changes)
            ],
        )

    def digest(self, cursor: str, limit: int) -> FeedPage:
        page = self.pull(cursor, limit)
        return FeedPage(
            node=page.node,
            changes=[{k: c[k] for k in ("model", "key", "hlc", "deleted")} for c in page.changes],
            next_cursor=page.next_cursor,
            has_more=page.has_more,
        )
