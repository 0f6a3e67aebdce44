"""A push that records the caller's push checkpoint with it (``record``), and carries its log.

The replication log's rules are those of ``POST /api/v1/sync/log`` (tests/replication/
test_replication_log.py, the contract suite); here: the record is a compare-and-set on the
session the caller last agreed with us, and a bad one refuses the whole batch.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from configsync.models import ReplicatedRecord, ReplicationLog
from configsync.replication.signing import sign
from tests.support.replication import REMOTE, SECRET, remote_change

pytestmark = pytest.mark.django_db

PUSH = "/api/v1/sync/push?log=true"


def _push(body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()
    headers = sign(secret=SECRET, method="POST", path=PUSH, body=raw, node=REMOTE)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return APIClient().generic("POST", PUSH, raw, content_type="application/json", **extra)


def _entry() -> tuple[str, str] | None:
    row = ReplicationLog.objects.filter(node_id=REMOTE, direction="push").first()
    return (row.session, row.cursor) if row else None


def test_the_checkpoint_is_recorded_when_the_log_holds_what_the_caller_replaces() -> None:
    first = {"session": "a" * 32, "cursor": "e1.1", "replaces": ""}
    answer = _push({"changes": [remote_change("A")], "record": first})
    assert answer.status_code == 200, answer.content
    assert answer.json()["recorded"] is True and _entry() == ("a" * 32, "e1.1")
    assert answer.json()["log"] == [{"direction": "push", "session": "a" * 32, "cursor": "e1.1"}]
    second = {"session": "b" * 32, "cursor": "e1.2", "replaces": "a" * 32}
    assert _push({"changes": [remote_change("B")], "record": second}).json()["recorded"] is True
    assert _entry() == ("b" * 32, "e1.2")


def test_a_record_replacing_another_session_changes_no_log_but_the_batch_applies() -> None:
    ReplicationLog.objects.create(node_id=REMOTE, direction="push", session="c" * 32, cursor="9")
    stale = {"session": "d" * 32, "cursor": "e1.3", "replaces": "a" * 32}
    answer = _push({"changes": [remote_change("C")], "record": stale})
    assert answer.status_code == 200
    assert answer.json()["recorded"] is False
    assert answer.json()["log"][0]["session"] == "c" * 32  # what the caller compares
    assert _entry() == ("c" * 32, "9")
    assert ReplicatedRecord.objects.filter(natural_key="C").exists()


@pytest.mark.parametrize(
    "record",
    [
        {"session": "NOT-HEX", "cursor": "1", "replaces": ""},
        {"session": "a" * 32, "cursor": "bad cursor", "replaces": ""},
        {"session": "a" * 32, "cursor": "1"},
    ],
)
def test_a_bad_record_refuses_the_whole_batch(record: dict[str, str]) -> None:
    answer = _push({"changes": [remote_change("D")], "record": record})
    assert answer.status_code == 400
    assert not ReplicatedRecord.objects.filter(natural_key="D").exists()
    assert _entry() is None
