"""atheris harness: signature headers of peer requests (``replication/signing.py``) through the
real request stack.

The input gives the four ``X-Configsync-*`` headers (NUL-separated; the first byte chooses
whether they are replaced by a valid signature with one of them overwritten); the answer is 200
only for an exactly signed request, else 400, 401 or 403, and a refused request remembers no
nonce.
"""

from __future__ import annotations

import sys

import _harness
import atheris

with atheris.instrument_imports(
    include=["configsync.replication.signing", "configsync.middleware"]
):
    _harness.setup(database=True)
    from django.db import transaction
    from django.test import Client

    from configsync.models import SyncNonce
    from configsync.replication.signing import sign

PATH = "/api/v1/sync/changes?since=&limit=5"
NAMES = ("HTTP_X_CONFIGSYNC_NODE", "HTTP_X_CONFIGSYNC_TIMESTAMP", "HTTP_X_CONFIGSYNC_NONCE")
NAMES += ("HTTP_X_CONFIGSYNC_SIGNATURE",)
CLIENT = Client()


def one_input(data: bytes) -> None:
    if not data:
        return
    parts = data[1:].decode("latin-1").split("\x00")
    valid = sign(secret=_harness.SECRET, method="GET", path=PATH, body=b"", node=_harness.PEER)
    signed = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in valid.items()}
    if data[0] % 2:
        headers = dict(signed)
        headers[NAMES[data[0] // 2 % 4]] = parts[0]
    else:
        headers = {name: value for name, value in zip(NAMES, parts, strict=False)}
    with transaction.atomic():
        response = CLIENT.get(PATH, **headers)
        status = response.status_code
        assert status in (200, 400, 401, 403), status
        assert status != 200 or headers == signed
        assert status == 200 or not SyncNonce.objects.exists()
        transaction.set_rollback(True)


if __name__ == "__main__":
    _harness.run("signature", one_input)
    sys.exit(0)
