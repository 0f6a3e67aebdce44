"""atheris harness: ``.env`` files (``configsync/envbridge/envfile.py``).

Any bytes parse or raise ``EnvSyntaxError``; what parses renders back byte for byte, and a value
set into it (taken from the input's tail) reads back with every other variable unchanged.
"""

from __future__ import annotations

import sys

import _harness
import atheris

with atheris.instrument_imports(include=["configsync.envbridge"]):
    _harness.setup()
    from configsync.envbridge.envfile import EnvDocument, EnvSyntaxError


def one_input(data: bytes) -> None:
    try:
        document = EnvDocument.parse_bytes(data)
    except EnvSyntaxError as exc:
        assert exc.problems
        return
    assert document.render().encode("utf-8") == data
    before = document.values()
    value = data[-24:].decode("utf-8", "replace")
    document.set("FUZZ_NAME", value)
    again = EnvDocument.parse(document.render())
    assert again.values() == {**before, "FUZZ_NAME": value}


if __name__ == "__main__":
    _harness.run("envfile", one_input)
    sys.exit(0)
