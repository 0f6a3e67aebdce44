"""Reads of the replication engine: the change feed, digests, unreadable records, the log.

The feed serves ``ReplicatedRecord`` rows with ``seq`` greater than the cursor, in ``seq`` order,
through the unique index on ``seq``: its cost grows with the number of changes since the cursor,
not with the number of records. A cursor is ``<epoch>.<seq>``: the epoch is a random id of this
database's feed, so a peer holding a cursor from before this node's database was reset or
restored starts over from the beginning (safe: applying is idempotent) instead of silently
missing everything up to its old position.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Subquery

from configsync.crypto.keyring import get_keyring, token_key_id
from configsync.models import Conflict, NodeClock, ReplicatedRecord, ReplicationLog
from configsync.replication import registry
from configsync.replication.errors import CursorError
from configsync.replication.hlc import HLC, HLCParseError
from configsync.replication.page import FeedPage, LogEntry

_CURSOR = re.compile(r"^(?:([0-9a-f]{1,32})\.)?(\d{1,18})\Z")


@dataclass(frozen=True)
class Cursor:
    """A position in a node's feed; ``epoch`` empty means "any epoch" (a bare sequence)."""

    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.seq}" if self.epoch else str(self.seq)


def cursor_parse(text: str | None) -> Cursor:
    """Parse a cursor (``""`` or ``"0"`` is the start); ``CursorError`` when it does not parse."""
    if text is None or text == "":
        return Cursor("", 0)
    match = _CURSOR.match(text)
    if match is None:
        raise CursorError("cursor does not parse: expected EPOCH.SEQ as returned by the feed")
    return Cursor(match.group(1) or "", int(match.group(2)))


def _clock_state() -> tuple[str, int]:
    row = NodeClock.objects.filter(pk=NodeClock.ROW_ID).values_list("epoch", "last_seq").first()
    return (row[0], row[1]) if row else ("", 0)


def feed_page(
    *, node: str, cursor: str | None, limit: int, exclude_node: str = "", digest: bool = False
) -> FeedPage:
    """The changes after ``cursor``, at most ``limit`` of them, in sequence order.

    ``node`` is this node's id, which the page carries (the caller has it: a selector never
    creates it).

    Rows received from ``exclude_node`` (the requesting peer) are left out, but the cursor still
    advances over them: a peer is never sent back what it sent. With ``digest`` the items carry
    only model, key, hlc and the tombstone flag. ``CursorError`` when the cursor does not parse.

    One query reads the clock and the page (``_page_rows``); a second only for rows of records
    holding a kept conflict (their losers and resolutions) and when the cursor is of another
    epoch or beyond the feed (the page starts over). An empty page costs one query.
    """
    position = cursor_parse(cursor)
    limit = max(limit, 1)
    since = position.seq
    epoch, last_seq, rows = _page_rows(since, limit, exclude_node)
    reset = False
    if position.epoch and (position.epoch != epoch or since > last_seq):
        since, reset = 0, True
        epoch, last_seq, rows = _page_rows(since, limit, exclude_node)
    has_more = len(rows) > limit
    kept = rows[:limit]
    if has_more:
        next_seq = kept[-1][_SEQ]
    elif exclude_node:
        # Every row up to the clock's last sequence (read in the same snapshot: a row's
        # sequence commits with the clock's) was read or left out: the cursor passes them all.
        next_seq = max(since, last_seq)
    else:
        next_seq = kept[-1][_SEQ] if kept else since
    if digest:
        changes = [
            {"model": r[0], "key": r[1], "hlc": r[2], "deleted": bool(r[_DELETED])} for r in kept
        ]
    else:
        losers, resolved = _conflict_notes_for({(r[0], r[1]) for r in kept if r[_CONFLICTED]})
        changes = []
        for label, key, hlc, origin, vv, deleted, data, seq, _, _ in kept:
            ident = (label, key, hlc)
            item: dict[str, Any] = {
                "model": label,
                "key": key,
                "hlc": hlc,
                "origin": origin,
                "vv": _json(vv),
                "deleted": bool(deleted),
                "data": None if deleted else _json(data),
                "seq": seq,
                "losers": losers.get(ident) or [],
            }
            if ident in resolved:
                item["resolved"] = resolved[ident]
            changes.append(item)
    return FeedPage(
        node=node,
        changes=changes,
        next_cursor=str(Cursor(epoch, next_seq)) if epoch else str(next_seq),
        has_more=has_more,
        reset=reset,
    )


_PAGE_COLUMNS = (
    "model_label",
    "natural_key",
    "hlc",
    "origin_node",
    "version_vector",
    "deleted",
    "data",
    "seq",
    "received_from",
)
_DELETED, _SEQ, _CONFLICTED = 5, 7, 9


def _json(value: Any) -> Any:
    """A JSON column as the driver returns it (text on both backends, as Django asks)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _page_rows(since: int, limit: int, exclude_node: str) -> tuple[str, int, list[tuple[Any, ...]]]:
    """This feed's epoch and last sequence, and up to ``limit + 1`` rows after ``since`` (but
    those received from ``exclude_node``), each ``_PAGE_COLUMNS`` plus whether a conflict is
    kept for its record; one query.

    The rows come from a subquery that reads the unique index on ``seq`` (``ORDER BY … LIMIT``),
    joined to one constant row so that an empty page still carries the clock (and a missing
    clock row reads as epoch ``""``, sequence 0, as before anything was written).
    """
    quote = connection.ops.quote_name
    records = quote(ReplicatedRecord._meta.db_table)
    clock = quote(NodeClock._meta.db_table)
    conflicts = quote(Conflict._meta.db_table)
    pk = quote(NodeClock._meta.pk.column)  # type: ignore[union-attr,arg-type]
    inner = ", ".join(f"r.{quote(name)}" for name in _PAGE_COLUMNS)
    outer = ", ".join(f"page.{quote(name)}" for name in _PAGE_COLUMNS)
    sql = (
        f"SELECT (SELECT epoch FROM {clock} WHERE {pk} = %s), "  # noqa: S608
        f"(SELECT last_seq FROM {clock} WHERE {pk} = %s), {outer}, page.conflicted "
        "FROM (SELECT 1 AS one) AS one LEFT JOIN ("
        f"SELECT {inner}, EXISTS (SELECT 1 FROM {conflicts} c "
        "WHERE c.model_label = r.model_label AND c.natural_key = r.natural_key) AS conflicted "
        f"FROM {records} r WHERE r.seq > %s {'AND r.received_from <> %s ' if exclude_node else ''}"
        "ORDER BY r.seq LIMIT %s) AS page ON 1 = 1 ORDER BY page.seq"
    )
    params: list[Any] = [NodeClock.ROW_ID, NodeClock.ROW_ID, since]
    params += [exclude_node] if exclude_node else []
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit + 1])
        fetched = cursor.fetchall()
    epoch, last_seq = fetched[0][0] or "", fetched[0][1] or 0
    rows = [row[2:] for row in fetched if row[2 + _SEQ] is not None]
    return epoch, int(last_seq), rows


def record_as_change(
    record: ReplicatedRecord,
    losers: list[dict[str, Any]] | None = None,
    resolved: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The feed item of one replication row (wire form; secrets stay ciphertext).

    ``losers``: versions that lost to exactly this version in a conflict kept here, so that
    receivers keep the same conflict. ``resolved``: conflicts this version resolved
    (``{"versions": [hlc, hlc], "chosen": hlc}``), so receivers close theirs.
    """
    item: dict[str, Any] = {
        "model": record.model_label,
        "key": record.natural_key,
        "hlc": record.hlc,
        "origin": record.origin_node,
        "vv": record.version_vector,
        "deleted": record.deleted,
        "data": None if record.deleted else record.data,
        "seq": record.seq,
        "losers": losers or [],
    }
    if resolved:
        item["resolved"] = resolved
    return item


Ident = tuple[str, str, str]


def _conflict_notes_for(
    records: set[tuple[str, str]],
) -> tuple[dict[Ident, list[dict[str, Any]]], dict[Ident, list[dict[str, Any]]]]:
    """Per ``(model, key, hlc)``: the versions that lost to it, the conflicts it resolved, for
    the records ``(model, key)`` holding a kept conflict (no query when there is none)."""
    if not records:
        return {}, {}
    keys = {key for _, key in records}
    losers: dict[Ident, list[dict[str, Any]]] = {}
    resolved: dict[Ident, list[dict[str, Any]]] = {}
    for conflict in Conflict.objects.filter(natural_key__in=keys).only(
        "model_label",
        "natural_key",
        "local_version",
        "remote_version",
        "winner",
        "resolution",
        "resolved_hlc",
    ):
        if not (
            _is_peer_version(conflict.local_version) and _is_peer_version(conflict.remote_version)
        ):
            continue  # e.g. a .env file's version: a local matter, not replicated
        if conflict.winner == Conflict.Winner.LOCAL:
            winning, losing = conflict.local_version, conflict.remote_version
        else:
            winning, losing = conflict.remote_version, conflict.local_version
        ident = (conflict.model_label, conflict.natural_key, winning["hlc"])
        losers.setdefault(ident, []).append(losing)
        if conflict.resolved_hlc and conflict.resolution:
            chosen = (
                conflict.local_version
                if conflict.resolution == Conflict.Winner.LOCAL
                else conflict.remote_version
            )
            note = {
                "versions": sorted([conflict.local_version["hlc"], conflict.remote_version["hlc"]]),
                "chosen": chosen["hlc"],
            }
            ident = (conflict.model_label, conflict.natural_key, conflict.resolved_hlc)
            resolved.setdefault(ident, []).append(note)
    return losers, resolved


def _is_peer_version(version: dict[str, Any]) -> bool:
    try:
        HLC.parse(version.get("hlc"))
    except HLCParseError:
        return False
    origin = version.get("origin")
    return isinstance(origin, str) and 0 < len(origin) <= 64


def feed_position(cursor: str | None) -> int:
    """The sequence of this node's feed that ``cursor`` (one this feed handed out) stands at.

    ``0`` (the start) when the cursor is empty, does not parse, or belongs to another epoch of
    this feed (the database was reset or restored since): nothing is known to be covered.
    """
    return feed_positions([cursor])[0]


def feed_positions(cursors: list[str | None]) -> list[int]:
    """``feed_position`` of each cursor, reading this feed's epoch once (for many peers)."""
    epoch: str | None = None
    positions = []
    for cursor in cursors:
        try:
            position = cursor_parse(cursor)
        except CursorError:
            positions.append(0)
            continue
        if position.epoch and epoch is None:
            epoch = _clock_state()[0]
        positions.append(0 if position.epoch and position.epoch != epoch else position.seq)
    return positions


def clock_hlc_ms() -> int | None:
    """The physical part of the last timestamp this node's clock issued (``None``: none yet).

    Ahead of the physical clock when the clock was set back after running ahead: the HLC never
    goes back, so every new local write carries at least this time.
    """
    return (
        NodeClock.objects.filter(pk=NodeClock.ROW_ID).values_list("last_wall_ms", flat=True).first()
    )


def replication_log_for(*, node: str) -> list[ReplicationLog]:
    """What this node recorded of ``node``'s checkpoints (its pull from us, its push to us)."""
    return list(ReplicationLog.objects.filter(node_id=node).order_by("direction"))


def feed_last_cursor() -> str:
    """The cursor of this node's newest change (what a fully caught-up peer holds)."""
    epoch, last_seq = _clock_state()
    return str(Cursor(epoch, last_seq)) if epoch else str(last_seq)


def records_unreadable() -> list[dict[str, Any]]:
    """Records holding ciphertext made with a key this node's keyring lacks (stored, relayed).

    Reads only the rows flagged when they arrived (an indexed query, not a scan of every record)
    and checks them against the current keyring, so adding the missing key clears the report.
    """
    try:
        keyring = get_keyring()
        known: set[str] | None = {key.kid for key in keyring.keys}
    except Exception:  # no usable keyring: every ciphertext is unreadable here
        known = None
    found: list[dict[str, Any]] = []
    for label, key, data in ReplicatedRecord.objects.filter(
        unreadable=True, deleted=False
    ).values_list("model_label", "natural_key", "data"):
        try:
            rm = registry.get(label)
        except LookupError:
            continue
        fields = [
            name
            for name in rm.encrypted_field_names()
            if (data or {}).get(name)
            and (known is None or token_key_id((data or {})[name]) not in known)
        ]
        if fields:
            found.append({"model": label, "key": key, "fields": fields})
    return found


# --- The head of the feed with the caller's log, for the peer endpoints (issue 14, H2) ---------


@dataclass(frozen=True)
class FeedHead:
    """This node's feed position and clock, and a caller's replication log, read in one query
    (:func:`feed_head`): all a peer's idle request needs besides its nonce."""

    epoch: str
    last_seq: int
    hlc_ms: int | None
    """``NodeClock.last_wall_ms`` (as :func:`clock_hlc_ms`)."""
    log: list[LogEntry]
    """The caller's entries (as :func:`replication_log_for`), by direction."""

    def empty_page(self, *, node: str, cursor: str | None) -> FeedPage | None:
        """The page :func:`feed_page` answers for ``cursor`` when it stands at the feed's last
        change (no row can follow it: nothing committed is numbered past ``last_seq``), else
        ``None``. ``CursorError`` when the cursor does not parse."""
        position = cursor_parse(cursor)
        if not self.epoch or position.epoch != self.epoch or position.seq != self.last_seq:
            return None
        return FeedPage(
            node=node,
            changes=[],
            next_cursor=str(Cursor(self.epoch, self.last_seq)),
            has_more=False,
        )


def feed_head(*, log_node: str) -> FeedHead:
    """The head of this node's feed, its clock and ``log_node``'s replication log entries."""
    log = {
        f"{direction}_{name}": Subquery(
            ReplicationLog.objects.filter(node_id=log_node, direction=direction).values(name)[:1]
        )
        for direction in ("pull", "push")
        for name in ("session", "cursor")
    }
    row = (
        NodeClock.objects.filter(pk=NodeClock.ROW_ID)
        .annotate(**log)
        .values("epoch", "last_seq", "last_wall_ms", *log)
        .first()
    )
    if row is None:  # no change yet: no clock row, but the log may exist
        return FeedHead(epoch="", last_seq=0, hlc_ms=None, log=_log_entries(log_node))
    entries = [
        LogEntry(
            direction=direction,
            session=row[f"{direction}_session"],
            cursor=row[f"{direction}_cursor"],
        )
        for direction in ("pull", "push")
        if row[f"{direction}_session"] is not None
    ]
    return FeedHead(
        epoch=row["epoch"], last_seq=row["last_seq"], hlc_ms=row["last_wall_ms"], log=entries
    )


def _log_entries(node: str) -> list[LogEntry]:
    return [
        LogEntry(direction=row.direction, session=row.session, cursor=row.cursor)
        for row in replication_log_for(node=node)
    ]
