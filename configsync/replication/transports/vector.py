"""The cursor of a shared medium: one position per writer, as printable text.

A shared medium (the external database, a bucket) has no single feed order: every node appends
its own changes, numbered from 1 by that node, and a reader keeps how far it has read each
writer. The cursor is that vector, ``writer=position`` pairs sorted by writer and joined with
``,`` (``""``: nothing read yet), where a position is digits, optionally followed by ``.`` and
digits (a segment and an offset into it). It fits ``PeerCheckpoint.cursor`` (2,000 characters,
about 25 writers with the longest node ids); a medium with more writers is refused with a clear
error rather than truncated.
"""

from __future__ import annotations

import re

from configsync.replication.errors import TransportError

MAX_CURSOR_LENGTH = 2000
_PAIR = re.compile(r"([A-Za-z0-9_.\-]{1,64})=(\d{1,18}(?:\.\d{1,9})?)")
"""``writer=position``: a writer is any node id (``CONFIGSYNC_NODE_ID``: 1-64 letters, digits,
``_``, ``.``, ``-``, which ``=`` and ``,`` never are); one the cursor could not carry back would
stop every reader of the medium."""


def vector_decode(cursor: str) -> dict[str, str]:
    """``{writer: position}`` from a cursor; ``TransportError`` when it is not one."""
    if not cursor:
        return {}
    vector: dict[str, str] = {}
    for part in cursor.split(","):
        match = _PAIR.fullmatch(part)
        if match is None or match.group(1) in vector:
            raise TransportError("not a cursor of this medium (writer=position,…)")
        vector[match.group(1)] = match.group(2)
    return vector


def vector_encode(vector: dict[str, str]) -> str:
    """The cursor text of ``{writer: position}`` (sorted by writer); ``TransportError`` when it
    would not fit ``MAX_CURSOR_LENGTH``."""
    text = ",".join(f"{writer}={vector[writer]}" for writer in sorted(vector))
    if len(text) > MAX_CURSOR_LENGTH:
        raise TransportError(
            f"too many writers for one cursor ({len(vector)}): use a replication group per site"
        )
    return text
