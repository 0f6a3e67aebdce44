"""The one interface every transport implements.

A transport moves feed pages and batches of changes between this node and one peer, and reads
and writes the peer's copy of our checkpoints (its replication log, see
``configsync.replication.services.cycle``). It never interprets them: the replication engine
(``configsync.replication.services.apply``) validates, decides and applies. Every failure to
reach the peer, every refusal and every unusable answer is a
``configsync.replication.errors.TransportError``.

A shared medium (the external database, a bucket) has no node of its own: its transport answers
with a stable medium id as ``node`` (``db.<group>``, ``bucket.<group>``), applies nothing
(``push`` answers ``applied`` for what it stored, readers decide), and reads other writers'
changes from a cursor that holds one position per writer.

Every answer of a peer carries its clock, and a transport remembers the last one it saw as
``last_skew_ms`` (the peer's clock minus ours), refusals included: that is how a node whose own
clock is wrong learns it from its peers, every cycle, even when they refuse to talk to it.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any

from configsync.replication.errors import TransportError
from configsync.replication.page import FeedPage, LogEntry

CHANGE_TEXT_LIMITS = {"model": 100, "key": 255, "hlc": 120}
"""The longest ``model``, ``key`` and ``hlc`` texts a shared medium stores for a change."""


def change_identity(change: Any) -> tuple[str, str, str] | None:
    """``(model, key, hlc)`` of a change that has them as short enough texts, else ``None``."""
    if not isinstance(change, dict):
        return None
    texts: list[str] = []
    for name, limit in CHANGE_TEXT_LIMITS.items():
        value = change.get(name)
        if not isinstance(value, str) or not value or len(value) > limit:
            return None
        texts.append(value)
    return texts[0], texts[1], texts[2]


def change_encoded(change: Any, *, medium: str, index: int) -> tuple[tuple[str, str, str], str]:
    """A change a shared medium is asked to store, as ``((model, key, hlc), compact JSON)``.

    ``TransportError`` naming ``medium`` and the item's ``index`` when it is not a change (no
    model, key and hlc as texts) or not JSON: the caller refuses the whole batch.
    """
    ident = change_identity(change)
    if ident is None:
        raise TransportError(
            f"{medium}: item {index} is not a change (model, key and hlc as texts)"
        )
    try:
        text = json.dumps(change, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise TransportError(f"{medium}: item {index} is not JSON") from None
    return ident, text


@dataclass(frozen=True)
class PushResult:
    """The peer's answer to a pushed batch: its node id and one result dict per item."""

    node: str
    results: list[dict[str, Any]] = field(default_factory=list)
    clock_ms: int | None = None
    log: list[LogEntry] | None = None
    """With ``push_with_log``: the peer's replication log for us (``None``: not sent)."""
    recorded: bool = False
    """With ``push_with_log(record=)``: the peer recorded the new push checkpoint."""


@dataclass(frozen=True)
class PushRecord:
    """A push checkpoint for the peer to record with a batch: the new ``session`` and ``cursor``,
    recorded only if the peer's entry still holds the session ``replaces`` (``""``: none)."""

    session: str
    cursor: str
    replaces: str

    def as_dict(self) -> dict[str, str]:
        return {"session": self.session, "cursor": self.cursor, "replaces": self.replaces}


@dataclass(frozen=True)
class ReplicationLogAnswer:
    """The peer's replication log for us: its node id, our entries, its clocks."""

    node: str
    entries: list[LogEntry] = field(default_factory=list)
    clock_ms: int | None = None
    hlc_ms: int | None = None

    def entry(self, direction: str) -> LogEntry | None:
        return next((e for e in self.entries if e.direction == direction), None)


class Transport(abc.ABC):
    """A channel to one peer."""

    name: str
    last_skew_ms: int | None = None
    """The peer's clock minus ours (ms) as seen on its last answer, refusals included."""
    prefetches: bool = False
    """Whether the cycle may call ``pull`` in another thread while it applies the previous page
    (``pull`` touches no database and the transport is not used meanwhile)."""
    max_cursor_length: int = 100
    """The longest cursor this transport's pages may carry (``PeerCheckpoint.cursor`` holds
    2,000; an HTTP peer's replication log accepts 100)."""

    def __init__(self) -> None:
        self.faults: list[str] = []
        """Problems met that did not stop the transport (a damaged segment of one writer while
        the others were read): the cycle applies what it got, then fails the run with these
        reasons, so ``status`` shows them and the next cycle retries. Never a value."""

    @abc.abstractmethod
    def pull(
        self, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False
    ) -> FeedPage:
        """The peer's changes after ``cursor`` (``""`` for the start), at most ``limit``.

        The peer leaves out what we sent it (no echo) unless ``echoes``: a direction that
        starts over after a restore asks for everything, since we may have lost what we sent.
        ``with_log``: the page also carries the peer's replication log for us (``page.log``,
        ``None`` when the peer does not send it), sparing a cycle the ``log_get`` request.
        """

    @abc.abstractmethod
    def push(self, changes: list[dict[str, Any]]) -> PushResult:
        """Send a batch; the peer answers per item (``applied|stale|conflict|quarantined``)."""

    def push_with_log(
        self, changes: list[dict[str, Any]], *, record: PushRecord | None = None
    ) -> PushResult:
        """:meth:`push`, the answer also carrying the peer's replication log for us
        (``PushResult.log``; ``None`` when this transport or the peer does not send it), sparing
        a push-only cycle the ``log_get`` request. With ``record``, the peer also records our
        push checkpoint once the batch is applied, only if its entry still holds
        ``record.replaces`` (``PushResult.recorded``), sparing the ``log_record`` request. This
        default does neither (a transport that cannot: the cycle asks separately)."""
        return self.push(changes)

    @abc.abstractmethod
    def digest(self, cursor: str, limit: int) -> FeedPage:
        """Like :meth:`pull` but every record (echoes included), items without values."""

    @abc.abstractmethod
    def log_get(self) -> ReplicationLogAnswer:
        """The peer's replication log entries for this node (one per direction at most)."""

    @abc.abstractmethod
    def log_record(self, *, direction: str, session: str, cursor: str) -> None:
        """Have the peer record our checkpoint of ``direction`` (replacing the previous one)."""

    def describe(self) -> str:
        """A one-line human description (never a secret)."""
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook, most transports hold nothing
        """Release what the transport holds open (connections); it is not used afterwards."""
