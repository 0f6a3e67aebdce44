"""atheris harness: snapshot files (``configsync/snapshots/document.py``) and their promotion.

Any bytes load as a validated document or raise ``SnapshotError``; a loaded document dumps and
loads back as itself, and promotes to a document that loads, or ``SnapshotError``.
"""

from __future__ import annotations

import sys

import _harness
import atheris

with atheris.instrument_imports(include=["configsync.snapshots", "configsync.validation"]):
    _harness.setup()
    from configsync.snapshots.document import SnapshotError, document_dumps, document_loads
    from configsync.snapshots.promotion import promote_document


def one_input(data: bytes) -> None:
    try:
        document = document_loads(data)
    except SnapshotError:
        return
    assert document_loads(document_dumps(document)) == document
    try:
        promoted = promote_document(document=document, mode="full")
    except SnapshotError:
        return
    assert document_loads(document_dumps(promoted)) == promoted


if __name__ == "__main__":
    _harness.run("snapshot", one_input)
    sys.exit(0)
