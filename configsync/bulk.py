"""Set-based writes: many rows of one table in one statement, in the caller's transaction.

What ``changes_apply`` and the history and audit trail write a page of received changes with,
instead of one ``save()`` (one ``INSERT``/``UPDATE`` and its signals) per record. Rows are
sequences of Python values in the order of the given fields, as a model's attributes hold them
(text, numbers, flags, ``None``, JSON-able values for JSON fields, aware date-times): this
module only adapts them to the backend. Table and column names come from the models' metadata,
quoted by the backend; values are always parameters.

* PostgreSQL: inserts stream through ``COPY … FROM STDIN`` (the cheapest way in, about 4× a
  multi-row ``INSERT`` built by Django's client-side binding), date-times as ISO 8601 text
  formatted once per distinct value (a page's rows share one); updates are one
  ``UPDATE … FROM jsonb_to_recordset(%s)`` whose one parameter is the rows as JSON text.
* SQLite (and any other backend): ``executemany`` of one ``INSERT``/``UPDATE`` statement, which
  the driver runs in C without re-parsing it.

Every statement is recorded like any other query (``connection.queries``,
``CaptureQueriesContext``), ``COPY`` included. Nothing here sends model signals: callers that
write models' rows tell their receivers themselves (``configsync.signals.changes_applied``).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
from collections.abc import Sequence
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.db.backends.utils import CursorDebugWrapper
from django.db.models.expressions import RawSQL

Row = Sequence[Any]


def _is_json(f: models.Field) -> bool:
    return isinstance(f, models.JSONField)


class _RowEncoder(DjangoJSONEncoder):
    """Rows as ``jsonb_to_recordset`` reads them: date-times to the microsecond."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime.datetime):
            return o.isoformat()
        return super().default(o)


def _column(f: models.Field) -> str:
    """``f``'s column, quoted by the backend."""
    assert f.column is not None
    return connection.ops.quote_name(f.column)


def _columns(fields: Sequence[models.Field]) -> str:
    return ", ".join(_column(f) for f in fields)


class JSONText(str):
    """A JSON field's value already encoded (as the field encodes it): written as it is, so a
    value going to several rows (a version's wire form, to the feed and to the history) is
    encoded once, and a common one (``[]``, ``{}``) never."""


def _adapted(fields: Sequence[models.Field], rows: Sequence[Row]) -> Sequence[Row]:
    """Rows as the driver takes them: JSON as text; date-times as the backend adapts them."""
    convert: list[tuple[int, Any]] = []
    for index, f in enumerate(fields):
        if _is_json(f):
            encoder = f.encoder  # type: ignore[attr-defined]
            convert.append((index, _encoding(encoder)))
        elif isinstance(f, models.DateTimeField):
            # The rows of a page share one time: formatted once (PostgreSQL takes ISO 8601
            # text for a ``timestamptz``, as psycopg would have sent it per row).
            adapt = _iso if connection.vendor == "postgresql" else None
            convert.append((index, _once(adapt or connection.ops.adapt_datetimefield_value)))
    if not convert:
        return rows
    adapted = []
    for row in rows:
        values = list(row)
        for index, function in convert:
            value = values[index]
            if value is not None:
                values[index] = function(value)
        adapted.append(values)
    return adapted


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime) else value


def _once(function: Any) -> Any:
    """``function`` remembering its last argument (the rows of a page share one time)."""
    last: list[Any] = [object(), None]

    def adapt(value: Any) -> Any:
        if value is not last[0]:
            last[:] = [value, function(value)]
        return last[1]

    return adapt


def _encoding(encoder: type[json.JSONEncoder] | None) -> Any:
    dumps = json.dumps if encoder is None else functools.partial(json.dumps, cls=encoder)
    return lambda value: value if type(value) is JSONText else dumps(value)


def rows_insert(
    *, model: type[models.Model], fields: Sequence[models.Field], rows: Sequence[Row]
) -> None:
    """Insert ``rows`` (values of ``fields``, in that order) into ``model``'s table.

    The primary key (and any column not named) takes its database default. A unique
    violation raises ``IntegrityError`` like ``save()`` would; nothing is inserted then.
    """
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    adapted = _adapted(fields, rows)
    if connection.vendor == "postgresql":
        sql = f"COPY {table} ({_columns(fields)}) FROM STDIN"
        with connection.cursor() as cursor, connection.wrap_database_errors:
            raw = cursor.cursor
            with _recorded(cursor, sql, len(rows)), raw.copy(sql) as copy:
                for row in adapted:
                    copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        sql = f"INSERT INTO {table} ({_columns(fields)}) VALUES ({marks})"  # noqa: S608
        cursor.executemany(sql, adapted)


def rows_update(
    *, model: type[models.Model], fields: Sequence[models.Field], rows: Sequence[Row]
) -> None:
    """Set ``fields`` of existing rows: each row is ``(primary key, *values of fields)``."""
    if not rows:
        return
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    pk = meta.pk
    assert pk is not None
    if connection.vendor == "postgresql":
        names = [f"c{i}" for i in range(len(fields))]
        payload = [
            {
                "pk": row[0],
                **{
                    name: json.loads(value) if type(value) is JSONText else value
                    for name, value in zip(names, row[1:], strict=True)
                },
            }
            for row in rows
        ]
        types = ", ".join(
            [f"pk {pk.rel_db_type(connection)}"]
            + [f"{name} {f.db_type(connection)}" for name, f in zip(names, fields, strict=True)]
        )
        assignments = ", ".join(
            f"{_column(f)} = v.{name}" for name, f in zip(names, fields, strict=True)
        )
        sql = (
            f"UPDATE {table} SET {assignments} FROM jsonb_to_recordset(%s::jsonb) AS v({types}) "  # noqa: S608
            f"WHERE {table}.{_column(pk)} = v.pk"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [json.dumps(payload, cls=_RowEncoder)])
        return
    assignments = ", ".join(f"{_column(f)} = %s" for f in fields)
    adapted = _adapted(fields, [row[1:] for row in rows])
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET {assignments} WHERE {_column(pk)} = %s",  # noqa: S608
            [(*values, row[0]) for values, row in zip(adapted, rows, strict=True)],
        )


def rows_delete(*, model: type[models.Model], pks: Sequence[Any]) -> None:
    """Delete rows by primary key in one statement, sending no signal and cascading nowhere
    (for models nothing references)."""
    if pks:
        model._default_manager.filter(pk__in=list(pks))._raw_delete(connection.alias)


def value_set(values: Sequence[str]) -> Sequence[str] | RawSQL:
    """``values`` as the right side of an ``__in`` lookup: beyond a few, one JSON parameter
    the database expands (``jsonb_array_elements_text``, SQLite's ``json_each``) rather than a
    placeholder per value, which Django and the driver would each process in Python."""
    if len(values) < 20:
        return values
    if connection.vendor == "postgresql":
        sql = "SELECT jsonb_array_elements_text(%s::jsonb)"
    else:
        sql = "SELECT value FROM json_each(%s)"
    return RawSQL(sql, [json.dumps(list(values))])  # noqa: S611 - a constant query, values bound


def rows_by_keys(
    *,
    model: type[models.Model],
    key_field: str,
    keys: Sequence[str],
    fields: Sequence[str],
    where: dict[str, str] | None = None,
    lock: bool = False,
) -> list[tuple[Any, ...]]:
    """The values of ``fields`` (as ``values_list`` gives them) of every row of ``model`` whose
    text column ``key_field`` is one of ``keys`` (and whose columns in ``where`` hold those
    values: together a unique key); with ``lock``, the rows are locked until the transaction
    ends (``FOR UPDATE``).

    One index probe per key, whatever the table's statistics say: on PostgreSQL a ``LATERAL``
    lookup per key of one JSON parameter (a table growing through a first sync has statistics
    of an empty one, and the planner would then scan every row per page), locking in the order
    of the sorted keys; elsewhere an ``__in`` lookup (SQLite's planner probes the index).
    """
    if not keys:
        return []
    if connection.vendor != "postgresql":
        rows = model._default_manager.filter(
            **(where or {}), **{f"{key_field}__in": value_set(keys)}
        )
        if lock:
            rows = rows.select_for_update()
        return list(rows.values_list(*fields))
    (fetched,) = _lookups_run([_lookup_sql(model, key_field, keys, fields, where or {}, lock=lock)])
    return fetched


def rows_by_keys_many(*, lookups: Sequence[dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
    """:func:`rows_by_keys` of each of ``lookups`` (its keyword arguments), in order: on
    PostgreSQL in one round trip (the statements run one after the other in one request, so
    rows are locked in the same order as by calling :func:`rows_by_keys` for each)."""
    if connection.vendor != "postgresql":
        return [rows_by_keys(**lookup) for lookup in lookups]
    built = [
        _lookup_sql(
            lookup["model"],
            lookup["key_field"],
            lookup["keys"],
            lookup["fields"],
            lookup.get("where") or {},
            lock=lookup.get("lock", False),
        )
        for lookup in lookups
        if lookup["keys"]
    ]
    results = iter(_lookups_run(built))
    return [next(results) if lookup["keys"] else [] for lookup in lookups]


_Lookup = tuple[str, list[Any], list[Any]]


def _lookup_sql(
    model: type[models.Model],
    key_field: str,
    keys: Sequence[str],
    fields: Sequence[str],
    where: dict[str, str],
    *,
    lock: bool,
) -> _Lookup:
    """The PostgreSQL statement of :func:`rows_by_keys`, its parameters and its columns."""
    meta = model._meta
    quote = connection.ops.quote_name
    columns = [meta.pk if name == "pk" else meta.get_field(name) for name in fields]
    conditions = [f"t.{_column(meta.get_field(key_field))} = k.key"]  # type: ignore[arg-type]
    params: list[Any] = [json.dumps(sorted(set(keys)))]
    for name, value in where.items():
        conditions.append(f"t.{_column(meta.get_field(name))} = %s")  # type: ignore[arg-type]
        params.append(value)
    selected = ", ".join(f"t.{_column(f)}" for f in columns)  # type: ignore[arg-type]
    sql = (
        f"SELECT m.* FROM jsonb_array_elements_text(%s::jsonb) AS k(key) "  # noqa: S608
        f"CROSS JOIN LATERAL (SELECT {selected} FROM {quote(meta.db_table)} t "
        f"WHERE {' AND '.join(conditions)} LIMIT 1{' FOR UPDATE' if lock else ''}) AS m"
    )
    return sql, params, columns


def _lookups_run(built: list[_Lookup]) -> list[list[tuple[Any, ...]]]:
    """Run the statements (one request when the driver binds parameters on the client, as
    Django's PostgreSQL backend does by default; else one each) and convert their rows."""
    import psycopg  # PostgreSQL only

    results: list[list[tuple[Any, ...]]] = []
    with connection.cursor() as cursor:
        if len(built) > 1 and isinstance(cursor.cursor, psycopg.ClientCursor):
            cursor.execute(
                "; ".join(sql for sql, _, _ in built),
                [param for _, params, _ in built for param in params],
            )
            for index in range(len(built)):
                if index:
                    cursor.cursor.nextset()
                results.append(cursor.fetchall())
        else:
            for sql, params, _ in built:
                cursor.execute(sql, params)
                results.append(cursor.fetchall())
    return [_converted(columns, rows) for (_, _, columns), rows in zip(built, results, strict=True)]


def _converted(columns: list[Any], fetched: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    convert = [getattr(f, "from_db_value", None) for f in columns]
    if not any(convert):
        return fetched
    return [
        tuple(
            value if c is None or value is None else c(value, None, connection)
            for c, value in zip(convert, row, strict=True)
        )
        for row in fetched
    ]


def _recorded(cursor: Any, sql: str, count: int) -> Any:
    """Record a statement the driver runs outside Django's cursor (``COPY``) in
    ``connection.queries`` when queries are being logged, as Django's debug cursor does."""
    if isinstance(cursor, CursorDebugWrapper):
        return cursor.debug_sql(f"{sql} -- {count} rows")
    return contextlib.nullcontext()
