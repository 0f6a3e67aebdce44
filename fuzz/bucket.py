"""atheris harness: bucket segments and snapshots (``transports/bucket/documents.py``).

Any body at a segment's or a snapshot's key unseals to its items or raises ``Damaged``, and
its items read as changes or entries or ``Damaged``; a body sealed from the input's JSON
round-trips.
"""

from __future__ import annotations

import sys

import _harness
import atheris

with atheris.instrument_imports(include=["configsync.replication.transports.bucket"]):
    _harness.setup()
    from configsync.replication.transports.bucket.documents import (
        SEGMENT,
        SNAPSHOT,
        Damaged,
        seal,
        segment_changes,
        snapshot_entries,
        unseal,
    )

WHERE = {"group": "default", "writer": _harness.PEER, "seq": 3, "secret": _harness.SECRET}


def one_input(data: bytes) -> None:
    for kind in (SEGMENT, SNAPSHOT):
        for secret in ("", _harness.SECRET):
            try:
                items = unseal(data, kind=kind, **{**WHERE, "secret": secret})
                if kind == SEGMENT:
                    segment_changes(items)
                else:
                    snapshot_entries(items, upto=3)
            except Damaged as exc:
                assert exc.reason
    value = _harness.json_of(data)
    if isinstance(value, list):
        try:
            body = seal(kind=SEGMENT, items=value, **WHERE)
        except (ValueError, RecursionError):  # NaN, infinity or too deep: never sealed
            return
        assert unseal(body, kind=SEGMENT, **WHERE) == value


if __name__ == "__main__":
    _harness.run("bucket", one_input)
    sys.exit(0)
