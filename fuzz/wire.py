"""atheris harness: sync batches as the push endpoint receives them (the request edge's JSON
parser, ``services/receive.py``, ``services/wire.py``, apply).

The input is the body of a correctly signed ``POST /api/v1/sync/push``: answered 200 or 400,
never a 5xx, and a 400 leaves the feed, the clock and the quarantine as they were; when the body
is JSON, ``changes_check`` of its ``changes`` answers one entry per item or refuses the batch.
"""

from __future__ import annotations

import sys

import _harness
import atheris

with atheris.instrument_imports(
    include=[
        "configsync.replication",
        "configsync.api.parsers",
        "configsync.validation",
        "providers",
    ]
):
    _harness.setup(database=True)
    from django.db import transaction
    from django.test import Client

    from configsync.models import NodeClock, QuarantinedChange, ReplicatedRecord
    from configsync.replication.errors import ChangeValidationError
    from configsync.replication.services.wire import changes_check
    from configsync.replication.signing import sign

PATH = "/api/v1/sync/push"
CLIENT = Client()


def _state() -> tuple[object, ...]:
    return (
        list(ReplicatedRecord.objects.values_list("model_label", "natural_key", "seq", "hlc")),
        list(NodeClock.objects.values_list("last_wall_ms", "last_logical", "last_seq")),
        QuarantinedChange.objects.count(),
    )


def one_input(data: bytes) -> None:
    value = _harness.json_of(data)
    if isinstance(value, dict):
        try:
            checked = changes_check(value.get("changes"))
        except ChangeValidationError:
            pass
        else:
            assert len(checked) == len(value["changes"])
    headers = sign(secret=_harness.SECRET, method="POST", path=PATH, body=data, node=_harness.PEER)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    with transaction.atomic():
        before = _state()
        response = CLIENT.generic("POST", PATH, data, content_type="application/json", **extra)
        assert response.status_code in (200, 400), response.status_code
        if response.status_code == 400:
            assert _state() == before
        transaction.set_rollback(True)


if __name__ == "__main__":
    _harness.run("wire", one_input)
    sys.exit(0)
