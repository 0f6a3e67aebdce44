"""atheris harness: cursors (a node's feed cursor ``EPOCH.SEQ``, a shared medium's
``writer=position,…`` vector, the bucket's positions, the external database's positions).

Each parses or raises ``CursorError``/``TransportError``; what parses prints back as itself.
"""

from __future__ import annotations

import contextlib
import sys

import _harness
import atheris

with atheris.instrument_imports(
    include=["configsync.replication.selectors.feed", "configsync.replication.transports"]
):
    _harness.setup()
    from configsync.replication.errors import CursorError, TransportError
    from configsync.replication.selectors.feed import cursor_parse
    from configsync.replication.transports.bucket.documents import Position
    from configsync.replication.transports.database import DatabaseTransport
    from configsync.replication.transports.vector import vector_decode, vector_encode

LINK = DatabaseTransport(name="external-db", node=_harness.NODE)


def one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    try:
        cursor = cursor_parse(text)
    except CursorError:
        pass
    else:
        assert cursor_parse(str(cursor)) == cursor
    try:
        vector = vector_decode(text)
    except TransportError:
        return
    try:
        assert vector_decode(vector_encode(vector)) == vector
    except TransportError:
        assert len(text) > 2000  # too many writers for one cursor
    for position in vector.values():
        parsed = Position.parse(position)
        assert Position.parse(parsed.text()) == parsed
    with contextlib.suppress(TransportError):
        LINK._positions(text)


if __name__ == "__main__":
    _harness.run("cursor", one_input)
    sys.exit(0)
