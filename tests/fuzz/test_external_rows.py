"""Fuzzed rows of the external database (``transports/database.py``): what another writer, or
anyone with access to the shared database, stored as a change.

Properties: a stored row parses back into its change or is ``None`` (damaged); a pull over rows
holding any text delivers exactly the rows that parse, reports the first damaged row of a writer
as a fault and stops that writer before it, and never raises for them; nothing it delivers is
other than what was stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configsync.replication.transports.database import DatabaseTransport, _parse
from tests.fuzz.strategies import FUZZ, JSON_VALUE, TEXT, mutated, mutated_bytes
from tests.support.kit_database import DatabaseKit
from tests.support.replication import LOCAL, OTHER, REMOTE, remote_change

VALID = remote_change("A")
ROWS = st.one_of(
    TEXT,
    JSON_VALUE.map(lambda v: json.dumps(v, allow_nan=True)),
    mutated(VALID).map(lambda v: json.dumps(v, allow_nan=True)),
    mutated_bytes(json.dumps(VALID).encode()).map(lambda b: b.decode("utf-8", "replace")),
    st.just("[" * 5000 + "]" * 5000),
)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (NaN included, which ``==`` never finds equal to itself)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no database column holds one
        return False
    return True


@FUZZ
@given(text=st.one_of(ROWS, JSON_VALUE))
def test_a_stored_row_is_its_change_or_damaged(text: Any) -> None:
    change = _parse(text)
    if change is not None:
        assert isinstance(change, dict) and _same(change, json.loads(text))
        assert all(isinstance(change[k], str) and change[k] for k in ("model", "key", "hlc"))


@pytest.fixture
def kit(settings: Any, tmp_path: Path) -> Any:
    settings.EXTERNAL_DATABASE_URL = f"sqlite:///{tmp_path / 'external.sqlite3'}"
    kit = DatabaseKit(url=settings.EXTERNAL_DATABASE_URL)
    yield kit
    kit.close()


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(texts=st.lists(ROWS.filter(_storable), min_size=1, max_size=3))
def test_a_pull_over_damaged_rows_delivers_what_parses_and_names_the_rest(
    kit: Any, texts: list[str]
) -> None:
    from django.db import connections

    writer = kit.link(node=REMOTE)
    keys = [f"K{i}" for i in range(len(texts))]
    writer.push([remote_change(key, node=REMOTE) for key in keys])
    kit.link(node=OTHER).push([remote_change("O", node=OTHER)])
    assert writer._used is not None
    connection = connections[writer._used]
    with connection.cursor() as cursor:
        for key, text in zip(keys, texts, strict=True):
            cursor.execute(
                "UPDATE configsync_ext_change SET change_json = %s WHERE writer = %s"
                " AND record_key = %s",
                [text, REMOTE, key],
            )
    reader = DatabaseTransport(name="external-db", node=LOCAL)
    try:
        page = reader.pull("", 100)
    finally:
        reader.close()
    parsed = [_parse(text) for text in texts]
    good = next((i for i, change in enumerate(parsed) if change is None), len(parsed))
    assert _same([c for c in page.changes if c.get("origin") != OTHER], parsed[:good])
    assert any(c.get("key") == "O" for c in page.changes)
    assert bool(reader.faults) == (good < len(parsed))
    connection.cursor().execute("DELETE FROM configsync_ext_change")
    connection.cursor().execute("DELETE FROM configsync_ext_writer")
