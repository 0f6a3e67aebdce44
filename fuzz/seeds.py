"""Rewrite the seed corpora under ``fuzz/corpus/`` from valid inputs made by a throwaway node:
``python fuzz/seeds.py``. The seeds are small valid inputs of each parser (a push body of every
replicated model, a feed page, a snapshot, sealed bucket documents, a stored row, cursors,
tokens, signature headers, ``.env`` files); their ciphertext is made with ``settings.test``'s
fake keys, which the harnesses use too. ``regression-*`` files (inputs that once crashed a
parser) are kept."""

from __future__ import annotations

import json

import _harness

_harness.setup(database=True)

from configsync.crypto.keyring import get_keyring  # noqa: E402
from configsync.replication.services.receive import changes_receive  # noqa: E402
from configsync.replication.signing import sign  # noqa: E402
from configsync.replication.transports.bucket.documents import SEGMENT, SNAPSHOT, seal  # noqa: E402
from configsync.snapshots.document import document_dumps  # noqa: E402
from configsync.snapshots.selectors import snapshot_document  # noqa: E402
from tests.support.fuzz import remote_batch  # noqa: E402

CANARY = "sk-CANARY-fuzz-seed-0001"


def write(parser: str, name: str, data: bytes) -> None:
    folder = _harness.CORPUS / parser
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def main() -> None:
    for seed in _harness.CORPUS.glob("*/*"):
        if not seed.name.startswith("regression-"):  # inputs that once crashed a parser stay
            seed.unlink()
    batch = remote_batch(CANARY)
    compact = {"separators": (",", ":")}
    write("wire", "push.json", json.dumps({"changes": batch}, **compact).encode())
    page = {"node": _harness.PEER, "changes": batch[:3], "next_cursor": "e1.5", "has_more": False}
    page |= {"reset": False, "clock_ms": 1, "hlc_ms": None, "log": []}
    write("peer_page", "page.json", b"\x00" + json.dumps(page, **compact).encode())
    write(
        "peer_page",
        "push.json",
        b"\x00"
        + json.dumps(
            {"node": _harness.PEER, "results": [{"status": "applied"}], "clock_ms": 1}, **compact
        ).encode(),
    )
    changes_receive(changes=batch, source_node=_harness.PEER, source_name="peer")
    write("snapshot", "node.json", document_dumps(snapshot_document()))
    where = {"group": "default", "writer": _harness.PEER, "seq": 3, "secret": _harness.SECRET}
    write("bucket", "segment.json", seal(kind=SEGMENT, items=batch[:2], **where))
    entries = [[1, i, change] for i, change in enumerate(batch[:2])]
    write("bucket", "snapshot.json", seal(kind=SNAPSHOT, items=entries, **where))
    write("external_rows", "change.json", json.dumps(batch[1], **compact).encode())
    write("cursor", "feed", b"0123456789abcdef0123456789abcdef.42")
    write("cursor", "vector", b"node-a=12,node-b=3.4,node-c=0")
    token = get_keyring().encrypt("value", context="configsync.systemconfig.secret_value:FUZZ")
    write("envelope", "token", token.encode())
    headers = sign(secret="x", method="GET", path="/", body=b"", node=_harness.PEER)
    write("signature", "headers", b"\x00" + "\x00".join(headers.values()).encode())
    write("signature", "one", b"\x03" + headers["X-Configsync-Nonce"].encode())
    for name in ("basic.env", "crlf.env", "mixed-endings.env"):
        source = _harness.ROOT / "tests" / "envbridge" / "corpus" / name
        write("envfile", name, source.read_bytes())


if __name__ == "__main__":
    main()
