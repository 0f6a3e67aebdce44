"""A page of a node's change feed: what the feed selector builds and what a transport returns.

One type for both sides: ``configsync.replication.selectors.feed.feed_page`` builds this node's
page (its own fields only), the peer endpoint adds the clocks and, when asked, the caller's
replication log, and a transport (``configsync.replication.transports``) parses a peer's answer
back into the same type, clocks and log included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LogEntry:
    """The peer's record of one of our checkpoints: ``direction`` as we see it (``pull`` = our
    cursor into its feed, ``push`` = our feed as it acknowledged it), the checkpoint's random
    ``session`` and the ``cursor`` recorded with it."""

    direction: str
    session: str
    cursor: str


@dataclass(frozen=True)
class FeedPage:
    """A page of a node's feed: its node id, the items, the cursor after them, whether more.

    ``reset``: the cursor asked for was from another epoch of the feed, so the page starts over.
    ``clock_ms`` is the node's physical clock when it answered; ``hlc_ms`` the physical part of
    the last timestamp its clock issued (ahead of ``clock_ms`` when its clock was set back);
    ``log``: with ``pull(with_log=True)``, the peer's replication log for us (``None``: not
    sent). The three are set on a page received from a peer, not on one this node builds.
    """

    node: str
    changes: list[dict[str, Any]]
    next_cursor: str
    has_more: bool
    reset: bool = False
    clock_ms: int | None = None
    hlc_ms: int | None = None
    log: list[LogEntry] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The page's own fields as the feed endpoint answers them (clocks and log apart)."""
        return {
            "node": self.node,
            "changes": self.changes,
            "next_cursor": self.next_cursor,
            "has_more": self.has_more,
            "reset": self.reset,
        }
