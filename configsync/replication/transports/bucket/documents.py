"""What the bucket holds: object keys, sealed documents (segments, snapshots) and read positions.

Pure functions over bytes and numbers, no I/O: the transport (``.transport``) does the requests.
The layout, formats and their reasons are described in the package's docstring.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

FORMAT = 1
SEGMENT = "segment"
SNAPSHOT = "snapshot"
SEQ_DIGITS = 12
MAX_SEQ = 10**SEQ_DIGITS - 1
_MAC_DOMAIN = "configsync-bucket/1"
NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}(?:\.[A-Za-z0-9_\-]+)*")
"""A writer (node id) an object key can name safely: no leading, trailing or doubled dot (a key
part such as ``..``); a node whose id is not one refuses to use the bucket, naming the reason."""
_SEQ_NAME = re.compile(rf"(\d{{{SEQ_DIGITS}}})\.json")


class Damaged(Exception):
    """A document that must not be used; ``reason`` names what is wrong, never a value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Layout:
    """The keys of one replication group under the configured prefix."""

    prefix: str
    group: str

    @property
    def root(self) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{self.group}/" if prefix else f"{self.group}/"

    @property
    def manifest(self) -> str:
        return f"{self.root}group.json"

    @property
    def segments(self) -> str:
        return f"{self.root}segments/"

    def segments_of(self, writer: str) -> str:
        return f"{self.root}segments/{writer}/"

    def segment(self, writer: str, seq: int) -> str:
        return f"{self.segments_of(writer)}{seq:0{SEQ_DIGITS}d}.json"

    def snapshots_of(self, writer: str) -> str:
        return f"{self.root}snapshots/{writer}/"

    def snapshot(self, writer: str, seq: int) -> str:
        return f"{self.snapshots_of(writer)}{seq:0{SEQ_DIGITS}d}.json"

    def log(self, node: str) -> str:
        return f"{self.root}log/{node}.json"

    def after(self, writer: str, seq: int) -> str:
        """The ``StartAfter`` key that lists ``writer``'s segments from ``seq + 1``."""
        return self.segment(writer, seq) if seq > 0 else self.segments_of(writer)


def seq_of(key: str, folder: str) -> int | None:
    """The sequence number of ``folder<seq:012d>.json``; ``None`` for any other key."""
    if not key.startswith(folder):
        return None
    match = _SEQ_NAME.fullmatch(key[len(folder) :])
    return int(match.group(1)) if match else None


@dataclass(frozen=True, order=True)
class Position:
    """How far a reader has read one writer: segments below ``seq`` entirely, and the first
    ``offset`` items of segment ``seq``. Its cursor text is ``<seq - 1>`` when ``offset`` is 0
    (``"0"``: nothing), else ``<seq>.<offset>``. Items are compared by their origin
    ``(seq, index)``: an item is read when its origin is below the position."""

    seq: int = 1
    offset: int = 0

    @classmethod
    def parse(cls, text: str) -> Position:
        if "." in text:
            seq, offset = (int(part) for part in text.split(".", 1))
            return cls(max(seq, 1), offset) if seq >= 1 else cls()
        return cls(int(text) + 1, 0)

    def text(self) -> str:
        return str(self.seq - 1) if self.offset == 0 else f"{self.seq}.{self.offset}"

    @property
    def fresh(self) -> bool:
        return self.seq == 1 and self.offset == 0


def canonical(value: Any) -> bytes:
    """The one byte form of a JSON value that checksums are computed over (and stored in)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _mac(secret: str, kind: str, group: str, writer: str, seq: int, count: int, digest: str) -> str:
    message = f"{_MAC_DOMAIN}|{kind}|{group}|{writer}|{seq}|{count}|{digest}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def seal(*, kind: str, group: str, writer: str, seq: int, items: list[Any], secret: str) -> bytes:
    """The object body of a segment (``items``: changes) or a snapshot (``items``: ``[seq,
    index, change]``): a header, the items, their SHA-256 and, with a ``secret``, an HMAC that
    binds the checksum to the kind, group, writer and sequence number."""
    digest = hashlib.sha256(canonical(items)).hexdigest()
    document: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "group": group,
        "writer": writer,
        "seq": seq,
        "count": len(items),
        "items": items,
        "sha256": digest,
    }
    if secret:
        document["hmac"] = _mac(secret, kind, group, writer, seq, len(items), digest)
    return canonical(document)


def unseal(body: bytes, *, kind: str, group: str, writer: str, seq: int, secret: str) -> list[Any]:
    """The items of a sealed document found at the key of (``kind``, ``writer``, ``seq``);
    :class:`Damaged` when it is not what that key must hold."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise Damaged("not JSON (truncated or overwritten)") from None
    if not isinstance(document, dict) or document.get("kind") != kind:
        raise Damaged(f"not a {kind}")
    if document.get("format") != FORMAT:
        raise Damaged(f"unsupported format {str(document.get('format'))[:20]!r}")
    if document.get("group") != group:
        other = document.get("group")
        named = repr(other[:64]) if isinstance(other, str) else "none"
        raise Damaged(f"belongs to another replication group ({named})")
    if document.get("writer") != writer or document.get("seq") != seq:
        raise Damaged("its header does not match its key (writer or sequence number)")
    items = document.get("items")
    count = document.get("count")
    digest = document.get("sha256")
    if not isinstance(items, list) or count != len(items) or not isinstance(digest, str):
        raise Damaged("its item count does not match")
    try:
        actual = hashlib.sha256(canonical(items)).hexdigest()
    except (ValueError, RecursionError):
        raise Damaged("checksum mismatch") from None
    if not _same_text(actual, digest):
        raise Damaged("checksum mismatch")
    if secret:
        mac = document.get("hmac")
        if not isinstance(mac, str):
            raise Damaged("not signed with this group's sync secret (no signature)")
        expected = _mac(secret, kind, group, writer, seq, len(items), digest)
        if not _same_text(mac, expected):
            raise Damaged("not signed with this group's sync secret (bad signature)")
    return items


def _same_text(a: str, b: str) -> bool:
    """``hmac.compare_digest`` of two texts, one of them read from the bucket: compared as
    bytes, since ``compare_digest`` refuses text with non-ASCII characters (``TypeError``) and a
    damaged document may hold any, lone surrogates included."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def segment_changes(items: list[Any]) -> list[dict[str, Any]]:
    """A segment's items, each a JSON object; :class:`Damaged` otherwise."""
    if not all(isinstance(item, dict) for item in items):
        raise Damaged("an item is not a JSON object")
    return items


@dataclass(frozen=True)
class Entry:
    """One change of a snapshot and its origin: the segment and index it was written at."""

    seq: int
    index: int
    change: dict[str, Any]

    @property
    def origin(self) -> Position:
        return Position(self.seq, self.index)


def snapshot_entries(items: list[Any], *, upto: int) -> list[Entry]:
    """A snapshot's items as entries, in strictly increasing origin order, none beyond segment
    ``upto`` (the snapshot's own number); :class:`Damaged` otherwise."""
    entries: list[Entry] = []
    last = (0, -1)
    for item in items:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in item[:2])
            or not isinstance(item[2], dict)
        ):
            raise Damaged("an item is not [seq, index, change]")
        origin = (item[0], item[1])
        if origin <= last or not 1 <= item[0] <= upto or item[1] < 0:
            raise Damaged("its items are out of order")
        last = origin
        entries.append(Entry(item[0], item[1], item[2]))
    return entries


def compaction_key(change: dict[str, Any]) -> str:
    """What a snapshot keeps one change of: the record (model and natural key)."""
    return json.dumps([change.get("model"), change.get("key")], sort_keys=True, default=str)
