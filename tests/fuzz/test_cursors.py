"""Fuzzed cursors: a node's feed cursor (``selectors/feed.py``: ``cursor_parse``, ``feed_page``,
the ``since`` of ``GET /api/v1/sync/changes``) and a shared medium's vector cursor
(``transports/vector.py``, the bucket's ``Position``, the external database's positions).

Properties: parsing answers the cursor or ``CursorError``/``TransportError``, nothing else; what
parses prints back as itself (round trip); the endpoint answers 200 or 400, never a 5xx.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from configsync.replication.errors import CursorError, TransportError
from configsync.replication.selectors.feed import Cursor, cursor_parse, feed_page, feed_position
from configsync.replication.transports.bucket.documents import Position
from configsync.replication.transports.database import DatabaseTransport
from configsync.replication.transports.vector import (
    MAX_CURSOR_LENGTH,
    vector_decode,
    vector_encode,
)
from configsync.services.system_config import system_config_set
from tests.fuzz.strategies import FUZZ, TEXT, mutated
from tests.support.fuzz import signed_headers
from tests.support.replication import LOCAL

CHANGES = "/api/v1/sync/changes"
FEED_CURSORS = st.one_of(
    TEXT,
    st.from_regex(r"(?:[0-9a-f]{0,34}\.)?-?\d{0,20}", fullmatch=True),
    st.builds("{}.{}".format, st.text("0123456789abcdef", max_size=33), st.integers()),
    st.sampled_from(["", "0", ".", "1.", ".1", "a.1\n", "１２", "1e3", "0x10", " 1", "1 "]),
)
WRITER = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
POSITION = st.from_regex(r"\d{1,18}(?:\.\d{1,9})?", fullmatch=True)
VECTORS = st.dictionaries(WRITER, POSITION, max_size=4)


def vector_cursors() -> st.SearchStrategy[str]:
    valid = VECTORS.map(lambda v: ",".join(f"{w}={p}" for w, p in v.items()))
    return st.one_of(
        valid,
        valid.flatmap(
            lambda text: mutated([text]).map(
                lambda v: v[0] if v and isinstance(v, list) and isinstance(v[0], str) else text
            )
        ),
        TEXT,
        st.lists(st.one_of(TEXT, valid), max_size=4).map(",".join),
        st.sampled_from([",", "=", "a=", "=1", "a=1,a=2", "a=1.", "a=.1", "a=1.2.3", "a=1,"]),
    )


@FUZZ
@given(text=FEED_CURSORS)
def test_a_feed_cursor_parses_back_to_itself_or_is_refused(text: str) -> None:
    try:
        cursor = cursor_parse(text)
    except CursorError:
        return
    assert isinstance(cursor, Cursor) and cursor.seq >= 0
    assert cursor_parse(str(cursor)) == cursor
    if text not in ("", "0"):
        assert int(text.rsplit(".", 1)[-1]) == cursor.seq


@pytest.mark.django_db
@FUZZ
@given(text=FEED_CURSORS)
def test_the_feed_reads_from_any_cursor_or_refuses_it(text: str) -> None:
    system_config_set(key="A", value="1")
    try:
        page = feed_page(node=LOCAL, cursor=text, limit=5)
    except CursorError:
        assert feed_position(text) == 0
        return
    assert isinstance(page.changes, list)
    assert cursor_parse(page.next_cursor).seq >= 0


@pytest.mark.django_db
@FUZZ
@given(text=FEED_CURSORS, limit=st.one_of(TEXT, st.integers().map(str)))
def test_the_changes_endpoint_answers_any_since_and_limit_without_a_5xx(
    text: str, limit: str
) -> None:
    client = APIClient()
    query = {"since": text, "limit": limit}
    from urllib.parse import urlencode

    try:
        path = f"{CHANGES}?{urlencode(query)}"
    except UnicodeEncodeError:  # a lone surrogate cannot travel in a URL at all
        return
    response = client.get(path, **signed_headers("GET", path))
    assert response.status_code in (200, 400), response.content[:300]


@FUZZ
@given(text=vector_cursors())
def test_a_vector_cursor_decodes_and_encodes_back_or_is_refused(text: str) -> None:
    try:
        vector = vector_decode(text)
    except TransportError:
        return
    assert all(isinstance(w, str) and isinstance(p, str) for w, p in vector.items())
    try:
        encoded = vector_encode(vector)
    except TransportError:
        assert len(text) > MAX_CURSOR_LENGTH
        return
    assert vector_decode(encoded) == vector
    if text == ",".join(sorted(text.split(","), key=lambda part: part.split("=")[0])):
        assert encoded == text
    for position in vector.values():  # the bucket's reading of a position
        parsed = Position.parse(position)
        assert parsed.seq >= 1 and parsed.offset >= 0
        assert Position.parse(parsed.text()) == parsed


@FUZZ
@given(text=vector_cursors())
def test_the_external_database_takes_any_cursor_or_refuses_it(text: str) -> None:
    link = DatabaseTransport(name="external-db", node=LOCAL)
    try:
        positions = link._positions(text)
    except TransportError:
        return
    assert all(isinstance(p, int) and p >= 0 for p in positions.values())
