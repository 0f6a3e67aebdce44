"""The audit trail made to fail on purpose (the ``audit_down`` fixture in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from configsync.models import AuditEvent

TABLE = AuditEvent._meta.db_table


def audit_break(cursor: Any) -> None:
    if connection.vendor == "postgresql":
        cursor.execute(
            "CREATE FUNCTION configsync_test_audit_down() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit trail down (test)'; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER configsync_test_audit_down BEFORE INSERT ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION configsync_test_audit_down()"
        )
    else:
        cursor.execute(
            f"CREATE TRIGGER configsync_test_audit_down BEFORE INSERT ON {TABLE} "
            "BEGIN SELECT RAISE(ABORT, 'audit trail down (test)'); END"
        )


def audit_mend(cursor: Any) -> None:
    cursor.execute(
        f"DROP TRIGGER configsync_test_audit_down ON {TABLE}"
        if connection.vendor == "postgresql"
        else "DROP TRIGGER configsync_test_audit_down"
    )
    if connection.vendor == "postgresql":
        cursor.execute("DROP FUNCTION configsync_test_audit_down()")


@contextmanager
def audit_trail_down() -> Iterator[None]:
    """Every insert into the audit table fails inside the block (a real trigger, both backends)."""
    with connection.cursor() as cursor:
        audit_break(cursor)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            audit_mend(cursor)
