"""atheris harness: snapshot files (``configsync/snapshots/document.py``) and their promotion.

Any bytes load as a validated document or raise ``SnapshotError``; a loaded document dumps and
loads back as itself, and promotes to a document that loads, or ``SnapshotError``. An input that
is a JSON object is also tried resealed (its checksum made to match), so mutations reach the
checks behind the checksum.
"""

from __future__ import annotations

import json
import sys

import _harness
import atheris

with atheris.instrument_imports(include=["configsync.snapshots", "configsync.validation"]):
    _harness.setup()
    from configsync.snapshots.document import (
        SnapshotError,
        document_dumps,
        document_loads,
        document_seal,
    )
    from configsync.snapshots.promotion import promote_document


def one_input(data: bytes) -> None:
    check(data)
    value = _harness.json_of(data)
    if isinstance(value, dict):
        body = {name: member for name, member in value.items() if name != "checksum"}
        try:
            resealed = document_dumps(document_seal(body))
        except (UnicodeEncodeError, ValueError):  # no checksum of a lone surrogate or of NaN
            return
        check(resealed)


def check(data: bytes) -> None:
    try:
        document = document_loads(data)
    except SnapshotError:
        return
    assert _same(document_loads(document_dumps(document)), document)
    try:
        promoted = promote_document(document=document, mode="full")
    except SnapshotError:
        return
    assert _same(document_loads(document_dumps(promoted)), promoted)


def _same(a: object, b: object) -> bool:
    """Equal as JSON (NaN included, which ``==`` never finds equal to itself)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


if __name__ == "__main__":
    _harness.run("snapshot", one_input)
    sys.exit(0)
