"""Hybrid logical clock timestamps (Kulkarni et al., "Logical Physical Clocks", 2014).

An :class:`HLC` is ``(wall_ms, logical, node)``: physical milliseconds, a logical counter that
orders events within one millisecond (or while the physical clock lags), and the issuing node's id
as the final tie-break. Its text form ``WWWWWWWWWWWWWWW:LLLLLLLL:node`` (15-digit wall, 8-digit
counter) sorts lexicographically in the same total order as the tuple, so stored timestamps and
version-vector entries compare as plain strings.

The clock's state lives in the single ``NodeClock`` row; :func:`tick` and :func:`receive` are pure
functions over that state, called by ``configsync.replication.services.apply`` while it holds
the row lock (which is also what allocates feed sequence numbers in commit order).

The clock never refuses a local write. When the logical counter would pass ``MAX_LOGICAL``
(10^8 events inside one millisecond, or a received timestamp carrying a huge counter), the wall
part advances by 1 ms and the counter restarts at 0: the result still orders after every
timestamp seen, and it runs at most 1 ms ahead of what the counter alone would have given.
Received timestamps are bounded on input (``MAX_CLOCK_SKEW_SECONDS`` ahead of this node's
physical clock, checked by ``changes_apply`` for every HLC field of an item), so a peer cannot
push this clock far ahead either.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

WALL_DIGITS = 15
LOGICAL_DIGITS = 8
MAX_LOGICAL = 10**LOGICAL_DIGITS - 1
_PATTERN = re.compile(r"^(\d{15}):(\d{8}):([A-Za-z0-9_.\-]{1,64})\Z")


class HLCParseError(ValueError):
    """A text is not an HLC timestamp."""


@dataclass(frozen=True, order=True)
class HLC:
    """One timestamp; ordered by ``(wall_ms, logical, node)``."""

    wall_ms: int
    logical: int
    node: str

    def __str__(self) -> str:
        text = self.__dict__.get("_text")
        if text is None:
            text = f"{self.wall_ms:0{WALL_DIGITS}d}:{self.logical:0{LOGICAL_DIGITS}d}:{self.node}"
        return text

    @classmethod
    def parse(cls, text: object) -> HLC:
        """Parse the text form; ``HLCParseError`` with a reason otherwise."""
        if not isinstance(text, str):
            raise HLCParseError("timestamp must be a string")
        match = _PATTERN.match(text)
        if match is None:
            raise HLCParseError("timestamp is not WALL(15 digits):COUNTER(8 digits):NODE")
        stamp = cls(int(match.group(1)), int(match.group(2)), match.group(3))
        if text.isascii():
            # Then the pattern admitted the canonical form (``\d`` also matches other scripts'
            # digits, which ``str`` writes in ASCII): ``str`` gives the text back as it is,
            # kept outside the fields (equality, order and hash stay the tuple's).
            stamp.__dict__["_text"] = text
        return stamp

    @property
    def instant(self) -> tuple[int, int]:
        """``(wall_ms, logical)``: the moment without the node tie-break."""
        return (self.wall_ms, self.logical)


def physical_now_ms() -> int:
    """This node's physical clock in milliseconds since the epoch: the machine's clock plus
    ``CONFIGSYNC_CLOCK_OFFSET_MS`` (0 unless a test or development run skews this node on
    purpose; production refuses it). Everything that reads the node's time for ordering,
    skew checks or signatures reads it here, never the system clock directly."""
    from configsync.conf import app_settings

    return time.time_ns() // 1_000_000 + int(app_settings.CLOCK_OFFSET_MS or 0)


def tick(last_wall: int, last_logical: int, *, now_ms: int) -> tuple[int, int]:
    """The next local event's ``(wall, logical)`` after ``(last_wall, last_logical)``."""
    if now_ms > last_wall:
        return now_ms, 0
    return _bump(last_wall, last_logical)


def receive(last_wall: int, last_logical: int, remote: HLC, *, now_ms: int) -> tuple[int, int]:
    """The clock state after receiving ``remote`` (standard HLC receive rule)."""
    wall = max(last_wall, remote.wall_ms, now_ms)
    if wall == last_wall and wall == remote.wall_ms:
        return _bump(wall, max(last_logical, remote.logical))
    if wall == last_wall:
        return _bump(wall, last_logical)
    if wall == remote.wall_ms:
        return _bump(wall, remote.logical)
    return wall, 0


def _bump(wall: int, logical: int) -> tuple[int, int]:
    """The instant after ``(wall, logical)``: the counter's next value, or, when it is
    exhausted, the next millisecond with the counter at 0 (never a refusal, never a wrap)."""
    if logical >= MAX_LOGICAL:
        return wall + 1, 0
    return wall, logical + 1


def vv_leq(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether version vector ``a`` is pointwise ``<=`` ``b`` (a missing entry is the minimum)."""
    return all(b.get(node, "") >= stamp for node, stamp in a.items())


def vv_merge(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    """Pointwise maximum of two version vectors."""
    merged = dict(a)
    for node, stamp in b.items():
        if stamp > merged.get(node, ""):
            merged[node] = stamp
    return merged


def lww_wins(a: HLC, a_deleted: bool, b: HLC, b_deleted: bool) -> bool:
    """Whether version ``a`` beats concurrent version ``b`` by last-write-wins.

    The rule, identical on every node: the later ``(wall_ms, logical)`` wins; at exactly the same
    instant a delete beats an update (a tombstone is never undone by a racing write); then the
    greater node id wins. Two distinct versions never compare equal, since one node never issues
    the same timestamp twice.
    """
    if a.instant != b.instant:
        return a.instant > b.instant
    if a_deleted != b_deleted:
        return a_deleted
    return a.node > b.node
