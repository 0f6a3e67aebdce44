"""``DatabaseTransport``: a shared external database (``EXTERNAL_DATABASE_URL``) as a medium.

Several nodes of one replication group (``CONFIGSYNC_GROUP_ID``) share the database; it has no
node of its own, so the transport answers with the medium id ``db.<group>`` everywhere (the cycle
records it as ``received_from`` and never pushes those changes back). The tables are described
in ``configsync.replication.external.schema`` and created on first use (or by
``configsync external init``).

* ``push`` stores a batch as written by this node, verbatim (sensitive values are ciphertext in
  the wire form already; nothing is decrypted or re-encoded), in one transaction: all or nothing.
  Each record keeps one row per writer, replaced by a newer version (higher HLC) of the same
  record, which takes the writer's next ``seq``; an older or identical version leaves the row as
  it is. The writer's row in ``configsync_ext_writer`` is locked while its rows are numbered
  (``SELECT … FOR UPDATE``; SQLite serialises writers anyway), so two processes of one node
  never interleave numbers and one writer's rows commit in ``seq`` order: a reader that has seen
  ``seq`` n never misses a row committed later with a lower number. Nothing is applied: every
  reader validates and decides (``changes_apply``: LWW by HLC, conflicts, quarantine), and every
  writer's version of a record is kept, so a concurrent edit becomes a conflict on every reader.
* ``pull``/``digest`` read the writers table (one small query: an idle pull costs that, plus
  the log's when asked), then, per writer with news, "its rows after my position, in ``seq``
  order" (a range scan of the ``(grp, writer, seq)`` index), until ``limit`` items. The cursor
  is the vector of per-writer positions (``configsync.replication.transports.vector``). A
  position beyond the writer's head (the database was recreated) starts that writer over
  (``reset``). A stored row that does not parse as a change is a fault (``self.faults``): that
  writer stops before it, the others are read, the next cycle retries.
* Every database failure is a ``TransportError`` naming the medium (engine, database, host) and
  a reason drawn from the error's class or SQLSTATE, never the server's message, the URL or the
  password.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import Error as DatabaseFailure
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from configsync.conf import app_settings
from configsync.replication.errors import TransportError
from configsync.replication.external.connection import (
    alias_close,
    database_describe,
    external_alias,
    failure_reason,
)
from configsync.replication.external.schema import (
    CHANGE_TABLE,
    LOG_TABLE,
    WRITER_TABLE,
    schema_state,
    tables_ensure,
    tables_forget,
)
from configsync.replication.hlc import physical_now_ms
from configsync.replication.page import FeedPage, LogEntry
from configsync.replication.transports.base import (
    PushResult,
    ReplicationLogAnswer,
    Transport,
    change_encoded,
    change_identity,
)
from configsync.replication.transports.vector import (
    MAX_CURSOR_LENGTH,
    vector_decode,
    vector_encode,
)

MEDIUM_PREFIX = "db."
_KEY_CHUNK = 400
"""Keys per ``IN (…)`` lookup: well under SQLite's oldest limit of 999 parameters."""
_NODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PRINTABLE = re.compile(r"[\x21-\x7e]*")


def medium_id(group: str | None = None) -> str:
    """The node id the external database answers with: ``db.<group>``."""
    return f"{MEDIUM_PREFIX}{group if group is not None else app_settings.GROUP_ID}"


def _parse(text: Any) -> dict[str, Any] | None:
    """A stored row back into its change; ``None`` when it is not one (damaged)."""
    try:
        change = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return None
    return change if change_identity(change) is not None else None


class DatabaseTransport(Transport):
    """The external database (``alias``, default ``CONFIGSYNC_EXTERNAL_DATABASE_ALIAS``, kept to
    ``EXTERNAL_DATABASE_URL``), acting as node ``node``."""

    max_cursor_length = MAX_CURSOR_LENGTH

    def __init__(self, *, name: str, node: str, alias: str | None = None) -> None:
        super().__init__()
        if not _NODE.fullmatch(node):
            raise TransportError("this node's id cannot write to the external database")
        self.name = name
        self.node = node
        self.alias = alias
        self.group = str(app_settings.GROUP_ID)
        self.medium = medium_id(self.group)
        self._used: str | None = None
        """The alias this transport connected through (closed by :meth:`close`)."""

    # -- connection ---------------------------------------------------------------------------

    def describe(self) -> str:
        try:
            where = database_describe(external_alias(self.alias))
        except TransportError:
            where = "not configured"
        return f"{self.name} ({where})"

    def close(self) -> None:
        if self._used is not None:
            alias_close(self._used)
            self._used = None

    def _open(self) -> BaseDatabaseWrapper:
        alias = external_alias(self.alias)
        self._used = alias
        connection = connections[alias]
        try:
            tables_ensure(connection)
        except DatabaseFailure as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "42501":
                raise
            raise TransportError(
                "the tables are missing and this user may not create them: run "
                "`configsync external init` once as a user that may"
            ) from None
        return connection

    @contextmanager
    def _failing(self, action: str) -> Iterator[None]:
        """Turn a database failure into a ``TransportError`` that quotes nothing secret."""
        try:
            yield
        except TransportError as exc:
            raise TransportError(f"{self.describe()}: {exc}") from None
        except (DatabaseFailure, ImproperlyConfigured) as exc:
            reason = failure_reason(exc)
            if self._used is not None:
                if self._used in connections.settings:
                    tables_forget(connections[self._used])
                alias_close(self._used)  # a failed connection is reopened next time
            raise TransportError(f"{self.describe()}: cannot {action}: {reason}") from None

    # -- operations (``configsync external``) -------------------------------------------------

    def tables_init(self) -> list[str]:
        """Create the tables that are missing (checking again, whatever this process saw);
        the names created, ``[]`` when all were there."""
        with self._failing("create the tables"):
            alias = external_alias(self.alias)
            self._used = alias
            tables_forget(connections[alias])
            return tables_ensure(connections[alias])

    def status(self) -> dict[str, Any]:
        """The medium as this group sees it: the database (no credentials), the tables, each
        writer's head, rows and last write, each node's log entries. Creates nothing."""
        with self._failing("read the status"):
            alias = external_alias(self.alias)
            self._used = alias
            connection = connections[alias]
            state = schema_state(connection)
            report: dict[str, Any] = {
                "database": database_describe(alias),
                "medium": self.medium,
                "group": self.group,
                "schema_version": state.version,
                "tables_present": state.present,
                "tables_missing": state.missing,
                "writers": [],
                "log": [],
            }
            if state.missing:
                return report
            with connection.cursor() as db:
                db.execute(
                    f"SELECT writer, COUNT(*) FROM {CHANGE_TABLE} WHERE grp = %s"  # noqa: S608
                    " GROUP BY writer",
                    [self.group],
                )
                counts = {str(w): int(n) for w, n in db.fetchall()}
                db.execute(
                    f"SELECT writer, head, updated_ms FROM {WRITER_TABLE}"  # noqa: S608
                    " WHERE grp = %s ORDER BY writer",
                    [self.group],
                )
                report["writers"] = [
                    {
                        "writer": str(w),
                        "head": int(h),
                        "rows": counts.get(str(w), 0),
                        "updated": _iso(u),
                    }
                    for w, h, u in db.fetchall()
                ]
                db.execute(
                    f"SELECT node, direction, log_cursor, updated_ms FROM {LOG_TABLE}"  # noqa: S608
                    " WHERE grp = %s ORDER BY node, direction",
                    [self.group],
                )
                report["log"] = [
                    {"node": str(n), "direction": str(d), "cursor": str(c), "updated": _iso(u)}
                    for n, d, c, u in db.fetchall()
                ]
            return report

    # -- writing ------------------------------------------------------------------------------

    def push(self, changes: list[dict[str, Any]]) -> PushResult:
        """Store ``changes`` as written by this node (all or nothing); each answers ``applied``:
        stored for the readers, who decide. A malformed item refuses the batch."""
        latest: dict[tuple[str, str], tuple[str, str]] = {}
        for index, change in enumerate(changes):
            ident, text = change_encoded(change, medium=self.name, index=index)
            latest[(ident[0], ident[1])] = (ident[2], text)  # a later item of a record wins
        if latest:
            with self._failing("store changes"):
                self._store(latest)
        return PushResult(node=self.medium, results=[{"status": "applied"} for _ in changes])

    def _store(self, latest: dict[tuple[str, str], tuple[str, str]]) -> None:
        connection = self._open()
        now = physical_now_ms()
        lock = " FOR UPDATE" if connection.vendor == "postgresql" else ""
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {WRITER_TABLE} (grp, writer, head, updated_ms)"  # noqa: S608
                " VALUES (%s, %s, 0, %s) ON CONFLICT (grp, writer) DO NOTHING",
                [self.group, self.node, now],
            )
            cursor.execute(
                f"SELECT head FROM {WRITER_TABLE} WHERE grp = %s AND writer = %s{lock}",  # noqa: S608
                [self.group, self.node],
            )
            head = int(cursor.fetchone()[0])
            stored: dict[tuple[str, str], tuple[str, str]] = {}
            keys = sorted({key for _, key in latest})
            for start in range(0, len(keys), _KEY_CHUNK):
                chunk = keys[start : start + _KEY_CHUNK]
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(
                    f"SELECT model, record_key, hlc, change_json FROM {CHANGE_TABLE}"  # noqa: S608
                    f" WHERE grp = %s AND writer = %s AND record_key IN ({marks})",
                    [self.group, self.node, *chunk],
                )
                for model, key, hlc, text in cursor.fetchall():
                    stored[(model, key)] = (hlc, text)
            rows: list[list[Any]] = []
            for (model, key), (hlc, text) in latest.items():
                before = stored.get((model, key))
                # HLC texts sort as the timestamps do. A writer restored from a backup re-sends
                # older versions: the newer one it stored stays (it may need it back).
                if before is not None and (before[0] > hlc or before == (hlc, text)):
                    continue
                head += 1
                rows.append([self.group, self.node, model, key, head, hlc, text, now, now])
            if not rows:
                return
            cursor.executemany(
                f"INSERT INTO {CHANGE_TABLE} (grp, writer, model, record_key, seq, hlc,"  # noqa: S608
                " change_json, created_ms, updated_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (grp, writer, model, record_key) DO UPDATE SET seq = excluded.seq,"
                " hlc = excluded.hlc, change_json = excluded.change_json,"
                " updated_ms = excluded.updated_ms",
                rows,
            )
            cursor.execute(
                f"UPDATE {WRITER_TABLE} SET head = %s, updated_ms = %s"  # noqa: S608
                " WHERE grp = %s AND writer = %s",
                [head, now, self.group, self.node],
            )

    # -- reading ------------------------------------------------------------------------------

    def pull(
        self, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False
    ) -> FeedPage:
        return self._page(cursor, limit, echoes=echoes, with_log=with_log, digest=False)

    def digest(self, cursor: str, limit: int) -> FeedPage:
        return self._page(cursor, limit, echoes=True, with_log=False, digest=True)

    def _positions(self, cursor: str) -> dict[str, int]:
        positions: dict[str, int] = {}
        for writer, position in vector_decode(cursor).items():
            if not position.isdigit():
                raise TransportError(f"{self.name}: not a cursor of this medium (writer=seq,…)")
            positions[writer] = int(position)
        return positions

    def _page(
        self, cursor: str, limit: int, *, echoes: bool, with_log: bool, digest: bool
    ) -> FeedPage:
        vector = self._positions(cursor)
        limit = max(1, int(limit))
        with self._failing("read changes"):
            connection = self._open()
            with connection.cursor() as db:
                db.execute(
                    f"SELECT writer, head FROM {WRITER_TABLE} WHERE grp = %s",  # noqa: S608
                    [self.group],
                )
                heads = {str(writer): int(head) for writer, head in db.fetchall()}
                stale = [w for w, p in vector.items() if p > heads.get(w, 0)]
                for writer in stale:  # the medium was recreated: read that writer again
                    del vector[writer]
                changes: list[dict[str, Any]] = []
                more = False
                for writer in sorted(heads):
                    start = vector.get(writer, 0)
                    if (writer == self.node and not echoes) or heads[writer] <= start:
                        continue
                    room = limit - len(changes)
                    if room <= 0:
                        more = True
                        break
                    db.execute(
                        f"SELECT seq, change_json FROM {CHANGE_TABLE}"  # noqa: S608
                        " WHERE grp = %s AND writer = %s AND seq > %s ORDER BY seq LIMIT %s",
                        [self.group, writer, start, room + 1],
                    )
                    rows = db.fetchall()
                    writer_more = len(rows) > room
                    for seq, text in rows[:room]:
                        change = _parse(text)
                        if change is None:
                            self._fault(f"writer {writer}: stored change {seq} is damaged")
                            writer_more = False  # it stops before the damage until repaired
                            break
                        changes.append(_digest_item(change) if digest else change)
                        vector[writer] = int(seq)
                    more = more or writer_more
                log = self._entries(db) if with_log else None
        return FeedPage(
            node=self.medium,
            changes=changes,
            next_cursor=vector_encode({w: str(p) for w, p in vector.items() if p > 0}),
            has_more=more,
            reset=bool(stale),
            log=log,
        )

    def _fault(self, reason: str) -> None:
        if reason not in self.faults:
            self.faults.append(reason)

    # -- replication log ----------------------------------------------------------------------

    def _entries(self, db: Any) -> list[LogEntry]:
        db.execute(
            f"SELECT direction, log_session, log_cursor FROM {LOG_TABLE}"  # noqa: S608
            " WHERE grp = %s AND node = %s ORDER BY direction",
            [self.group, self.node],
        )
        return [
            LogEntry(direction=str(d), session=str(s), cursor=str(c)) for d, s, c in db.fetchall()
        ]

    def log_get(self) -> ReplicationLogAnswer:
        with self._failing("read the replication log"):
            connection = self._open()
            with connection.cursor() as db:
                entries = self._entries(db)
        return ReplicationLogAnswer(node=self.medium, entries=entries)

    def log_record(self, *, direction: str, session: str, cursor: str) -> None:
        fields = ((direction, 16), (session, 64), (cursor, MAX_CURSOR_LENGTH))
        if any(not _PRINTABLE.fullmatch(text) or len(text) > n for text, n in fields) or not (
            direction and session
        ):
            raise TransportError(f"{self.name}: not a replication log entry")
        with self._failing("record the replication log"):
            connection = self._open()
            with connection.cursor() as db:
                db.execute(
                    f"INSERT INTO {LOG_TABLE} (grp, node, direction, log_session,"  # noqa: S608
                    " log_cursor,"
                    " updated_ms) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (grp, node, direction) DO UPDATE SET"
                    " log_session = excluded.log_session, log_cursor = excluded.log_cursor,"
                    " updated_ms = excluded.updated_ms",
                    [self.group, self.node, direction, session, cursor, physical_now_ms()],
                )


def _iso(ms: Any) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat(timespec="seconds")


def _digest_item(change: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in change.items() if k not in ("data", "losers")}
