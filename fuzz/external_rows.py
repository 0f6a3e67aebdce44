"""atheris harness: rows of the external database (``transports/database.py``'s ``_parse``:
a stored ``change_json`` back into its change, or ``None`` for a damaged row)."""

from __future__ import annotations

import sys

import _harness
import atheris

with atheris.instrument_imports(include=["configsync.replication.transports.database"]):
    _harness.setup()
    from configsync.replication.transports.base import change_identity
    from configsync.replication.transports.database import _parse


def one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicode(len(data))
    change = _parse(text)
    assert change is None or change_identity(change) is not None


if __name__ == "__main__":
    _harness.run("external_rows", one_input)
    sys.exit(0)
