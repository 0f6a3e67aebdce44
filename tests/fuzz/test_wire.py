"""Fuzzed sync batches: the wire form a peer pushes (``services/wire.py``: ``changes_check``;
``services/receive.py``: ``changes_receive``) and the push endpoint that parses its body.

Properties: ``changes_check`` of any JSON answers one entry per item or refuses the batch with
``ChangeValidationError``, and never writes; a near-valid batch applies exactly the items it
answers ``applied``/``conflict`` — every other item leaves its record, the feed and the clock as
they were, and a refused batch changes nothing at all; the push endpoint answers any body (bytes,
mutated JSON, mutated valid batches) with 200 or 400, never a 5xx, and a 400 changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import get_keyring
from configsync.models import QuarantinedChange
from configsync.replication.errors import ChangeValidationError
from configsync.replication.services.receive import changes_receive
from configsync.replication.services.wire import (
    APPLIED,
    CONFLICT,
    QUARANTINED,
    STALE,
    Held,
    ParsedChange,
    changes_check,
)
from tests.fuzz.strategies import FUZZ, JSON_VALUE, TEXT, json_bytes, mutated, mutated_bytes
from tests.support.fuzz import signed_headers, state
from tests.support.replication import REMOTE

pytestmark = pytest.mark.django_db

PUSH = "/api/v1/sync/push"
WRITES = ("INSERT", "UPDATE", "DELETE")


def batches(valid: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Near-valid batches (mostly), a valid item among garbage, and garbage."""
    return st.one_of(
        mutated(valid),
        mutated(valid),
        st.lists(st.one_of(st.sampled_from(valid), mutated(valid[0]), JSON_VALUE), max_size=5),
        JSON_VALUE,
    )


@FUZZ
@given(data=st.data())
def test_check_answers_every_item_or_refuses_the_batch_and_never_writes(
    valid_batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    changes = data.draw(batches(valid_batch))
    with CaptureQueriesContext(connection) as queries:
        try:
            checked = changes_check(changes)
        except ChangeValidationError as exc:
            assert exc.errors and exc.errors[0]["index"] == -1
            checked = None
    if checked is not None:
        assert isinstance(changes, list) and len(checked) == len(changes)
        assert all(isinstance(entry, ParsedChange | Held) for entry in checked)
        for entry in checked:
            if isinstance(entry, Held):
                assert entry.reason and "sk-CANARY" not in entry.reason
    assert not [q for q in queries.captured_queries if q["sql"].lstrip().startswith(WRITES)]


def _ident(item: Any) -> tuple[str, str] | None:
    if isinstance(item, dict) and isinstance(item.get("model"), str):
        key = item.get("key")
        if isinstance(key, str):
            return item["model"], key
    return None


@FUZZ
@given(data=st.data())
def test_a_near_valid_batch_applies_only_what_it_answers_applied(
    valid_batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    changes = data.draw(batches(valid_batch))
    with transaction.atomic():
        before, kept = state(), QuarantinedChange.objects.count()
        try:
            results = changes_receive(changes=changes, source_node=REMOTE, source_name="peer")
        except ChangeValidationError:
            assert state() == before and QuarantinedChange.objects.count() == kept
            results = None
        if results is not None:
            assert isinstance(changes, list) and len(results) == len(changes)
            statuses = [result.status for result in results]
            assert set(statuses) <= {APPLIED, STALE, CONFLICT, QUARANTINED}
            after = state()
            if not {APPLIED, CONFLICT} & set(statuses):
                assert after == before
            named = [(_ident(c), s) for c, s in zip(changes, statuses, strict=True)]
            written = {ident for ident, s in named if s in (APPLIED, CONFLICT)}
            refused = {ident for ident, s in named if s in (STALE, QUARANTINED)} - written
            for label, key in filter(None, refused):
                assert _feed_rows(before, label, key) == _feed_rows(after, label, key)
            quarantined = statuses.count(QUARANTINED)
            assert QuarantinedChange.objects.count() <= kept + quarantined
        transaction.set_rollback(True)


def _feed_rows(snapshot: dict[str, Any], label: str, key: str) -> list[Any]:
    return [row for row in snapshot["feed"] if row[0] == label.lower() and row[1] == key]


def test_the_valid_batch_applies_whole(valid_batch: list[dict[str, Any]]) -> None:
    """The inputs the fuzzers mutate are valid: every item of them applies."""
    results = changes_receive(changes=valid_batch, source_node=REMOTE, source_name="peer")
    assert [r.status for r in results] == [APPLIED] * len(valid_batch)
    assert {m for m in (i["model"] for i in valid_batch)} >= {
        "configsync.systemconfig",
        "providers.aiproviderconfig",
        "auth.user",
        "auth.group",
    }


RECORD = {"session": "ab" * 8, "cursor": "e1.5", "replaces": ""}


def bodies(valid: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    document = {"changes": valid, "record": RECORD}
    return st.one_of(
        st.binary(max_size=200),
        JSON_VALUE.map(json_bytes),
        mutated(document).map(json_bytes),
        mutated_bytes(json.dumps(document).encode()),
    )


@FUZZ
@given(data=st.data())
def test_the_push_endpoint_answers_any_body_without_a_5xx(
    valid_batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    body = data.draw(bodies(valid_batch))
    path = PUSH + data.draw(st.sampled_from(["", "?log=true", "?log=maybe"]))
    with transaction.atomic():
        before, kept = state(), QuarantinedChange.objects.count()
        response = APIClient().generic(
            "POST",
            path,
            body,
            content_type="application/json",
            **signed_headers("POST", path, body),
        )
        assert response.status_code in (200, 400), response.content[:300]
        assert b"sk-CANARY" not in response.content
        if response.status_code == 400:
            assert state() == before and QuarantinedChange.objects.count() == kept
        transaction.set_rollback(True)


@FUZZ
@given(data=st.data())
def test_a_user_sealing_any_password_text_is_applied_or_quarantined(
    valid_batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    """A peer holding the keys can seal any text as a user's password hash (``auth.py``): it is
    a hash this node knows, or an unusable one, or the user is quarantined; never an error."""
    user = next(item for item in valid_batch if item["model"] == "auth.user")
    plain = data.draw(
        st.one_of(
            TEXT,
            st.sampled_from(
                ["md5$$" + "0" * 32, "0" * 32, "!", "!x", "md5$", "$", "pbkdf2_sha256$1$s$h"]
            ),
            st.builds("{}${}".format, TEXT, TEXT),
        ).filter(_encodable)
    )
    item = json.loads(json.dumps(user))
    item["data"]["password"] = get_keyring().encrypt(
        plain,
        context=encryption_context_for(
            model_label="auth.user", field_name="password", natural_key=item["key"]
        ),
    )
    with transaction.atomic():
        before = state()
        (result,) = changes_receive(changes=[item], source_node=REMOTE, source_name="peer")
        assert result.status in (APPLIED, QUARANTINED)
        if result.status == QUARANTINED:
            assert state() == before and "password" in result.reason
            assert len(plain) < 8 or plain not in result.reason
        transaction.set_rollback(True)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


LOG = "/api/v1/sync/log"


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=100),
        JSON_VALUE.map(json_bytes),
        mutated({"direction": "push", **{k: RECORD[k] for k in ("session", "cursor")}}).map(
            json_bytes
        ),
    )
)
def test_the_replication_log_endpoint_answers_any_body_without_a_5xx(body: bytes) -> None:
    with transaction.atomic():
        before = state()
        response = APIClient().generic(
            "POST", LOG, body, content_type="application/json", **signed_headers("POST", LOG, body)
        )
        assert response.status_code in (200, 400), response.content[:300]
        if response.status_code == 400:
            assert state() == before
        transaction.set_rollback(True)
