"""The database transport's tables in the external database, and their creation.

Every table is partitioned by replication group (``grp``, ``CONFIGSYNC_GROUP_ID``):

* ``configsync_ext_change``: one row per (group, writer, model, key): the latest change that
  writer stored for that record, verbatim wire JSON (``change_json``: sensitive values only as
  ciphertext), its HLC and ``seq``, the writer's own increasing sequence, re-issued when the
  writer stores a newer version (an upsert), so the table stays bounded by writers × records.
  ``(grp, writer, seq)`` is unique, and that index makes "writer W after n, in order" a range
  scan.
* ``configsync_ext_writer``: per (group, writer) its ``head`` (the highest ``seq`` it issued).
  Locked by a writer's push while it numbers its rows, so one writer's rows commit in ``seq``
  order; an idle reader reads only this table.
* ``configsync_ext_log``: each node's replication-log checkpoints (one per direction).
* ``configsync_ext_meta``: ``schema_version``.

The SQL is plain enough for PostgreSQL and SQLite alike (``ON CONFLICT`` upserts, ``IF NOT
EXISTS``). Creation is idempotent and safe when several nodes start at once: PostgreSQL creates
under a transaction-level advisory lock (DDL is transactional there), SQLite under its write lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from configsync.replication.errors import TransportError

SCHEMA_VERSION = 1
CHANGE_TABLE = "configsync_ext_change"
WRITER_TABLE = "configsync_ext_writer"
LOG_TABLE = "configsync_ext_log"
META_TABLE = "configsync_ext_meta"
TABLES = (META_TABLE, WRITER_TABLE, CHANGE_TABLE, LOG_TABLE)

_ADVISORY_LOCK = 0x636F6E6673796E63  # "confsync": serialises concurrent creators (PostgreSQL)

DDL = (
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} ("
    " name VARCHAR(64) NOT NULL PRIMARY KEY,"
    " value TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {WRITER_TABLE} ("
    " grp VARCHAR(40) NOT NULL,"
    " writer VARCHAR(64) NOT NULL,"
    " head BIGINT NOT NULL,"
    " updated_ms BIGINT NOT NULL,"
    " PRIMARY KEY (grp, writer))",
    f"CREATE TABLE IF NOT EXISTS {CHANGE_TABLE} ("
    " grp VARCHAR(40) NOT NULL,"
    " writer VARCHAR(64) NOT NULL,"
    " model VARCHAR(100) NOT NULL,"
    " record_key VARCHAR(255) NOT NULL,"
    " seq BIGINT NOT NULL,"
    " hlc VARCHAR(120) NOT NULL,"
    " change_json TEXT NOT NULL,"
    " created_ms BIGINT NOT NULL,"
    " updated_ms BIGINT NOT NULL,"
    " PRIMARY KEY (grp, writer, model, record_key))",
    f"CREATE UNIQUE INDEX IF NOT EXISTS {CHANGE_TABLE}_seq ON {CHANGE_TABLE} (grp, writer, seq)",
    f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} ("
    " grp VARCHAR(40) NOT NULL,"
    " node VARCHAR(64) NOT NULL,"
    " direction VARCHAR(16) NOT NULL,"
    " log_session VARCHAR(64) NOT NULL,"
    " log_cursor TEXT NOT NULL,"
    " updated_ms BIGINT NOT NULL,"
    " PRIMARY KEY (grp, node, direction))",
    f"INSERT INTO {META_TABLE} (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}')"  # noqa: S608
    " ON CONFLICT (name) DO NOTHING",
)

_ready: set[tuple[str, ...]] = set()
"""Databases whose tables this process has seen (by alias and identity): checked once."""


@dataclass(frozen=True)
class SchemaState:
    """What the external database holds: the tables present and missing, the schema version."""

    present: list[str]
    missing: list[str]
    version: int | None


def _identity(connection: BaseDatabaseWrapper) -> tuple[str, ...]:
    config = connection.settings_dict
    return (connection.alias, *(str(config.get(k) or "") for k in ("NAME", "HOST", "PORT")))


def schema_state(connection: BaseDatabaseWrapper) -> SchemaState:
    """The tables of ours the database holds and its schema version (creates nothing)."""
    existing = set(connection.introspection.table_names())
    present = [t for t in TABLES if t in existing]
    missing = [t for t in TABLES if t not in existing]
    version = None
    if META_TABLE in existing:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT value FROM {META_TABLE} WHERE name = 'schema_version'")  # noqa: S608
            row = cursor.fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
    return SchemaState(present=present, missing=missing, version=version)


def tables_ensure(connection: BaseDatabaseWrapper) -> list[str]:
    """Create the tables that are missing; the names created (``[]``: all were there).

    Checked once per process and database. ``TransportError`` when the database holds a newer
    schema than this release knows. Database errors (no right to create, unreachable) propagate
    as Django's ``DatabaseError``; the transport words them.
    """
    key = _identity(connection)
    if key in _ready:
        return []
    state = schema_state(connection)
    created: list[str] = []
    if state.missing or state.version is None:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK])
            existing = set(connection.introspection.table_names(cursor))
            created = [t for t in TABLES if t not in existing]
            for statement in DDL:
                cursor.execute(statement)
        state = schema_state(connection)
    if state.version is not None and state.version > SCHEMA_VERSION:
        raise TransportError(
            f"the external database's tables are of a newer configsync (schema "
            f"{state.version}, this release knows {SCHEMA_VERSION}): upgrade this node"
        )
    _ready.add(key)
    return created


def tables_forget(connection: BaseDatabaseWrapper) -> None:
    """Check the tables again on next use (after an error saying they are missing)."""
    _ready.discard(_identity(connection))
