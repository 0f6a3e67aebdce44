"""The one interface every transport implements.

A transport moves feed pages and batches of changes between this node and one peer. It never
interprets them: the replication engine (``configsync.services.replication``) validates, decides
and applies. Every failure to reach the peer, every refusal and every unusable answer is a
``configsync.replication.errors.TransportError``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChangePage:
    """A page of the peer's feed: its node id, the items, the cursor after them, whether more."""

    node: str
    changes: list[dict[str, Any]]
    next_cursor: str
    has_more: bool
    reset: bool = False
    clock_ms: int | None = None


@dataclass(frozen=True)
class PushResult:
    """The peer's answer to a pushed batch: its node id and one result dict per item."""

    node: str
    results: list[dict[str, Any]] = field(default_factory=list)
    clock_ms: int | None = None


class Transport(abc.ABC):
    """A channel to one peer."""

    name: str

    @abc.abstractmethod
    def pull(self, cursor: str, limit: int) -> ChangePage:
        """The peer's changes after ``cursor`` (``""`` for the start), at most ``limit``."""

    @abc.abstractmethod
    def push(self, changes: list[dict[str, Any]]) -> PushResult:
        """Send a batch; the peer applies it atomically and answers per item."""

    @abc.abstractmethod
    def digest(self, cursor: str, limit: int) -> ChangePage:
        """Like :meth:`pull` but every record (echoes included), items without values."""

    def describe(self) -> str:
        """A one-line human description (never a secret)."""
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook, most transports hold nothing
        """Release what the transport holds open (connections); it is not used afterwards."""
