"""Fuzzed signature headers of peer requests (``replication/signing.py``), through the real
request stack (``EdgeMiddleware``, DRF, ``SyncSignatureAuthentication``).

Properties: any values of the four headers — garbage, or a valid signature with one to four of
its parts (headers, method, path, body) mutated — are answered 200 only when the request is
exactly the one signed, else 400 (text no node stores), 401 or 403, never a 5xx; a refused
request remembers no nonce and applies nothing; a replay of a valid request is refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from configsync.models import QuarantinedChange, SyncNonce
from tests.fuzz.strategies import FUZZ, HOSTILE, TEXT, mutated
from tests.support.fuzz import signed_headers, state
from tests.support.replication import REMOTE, remote_change

pytestmark = pytest.mark.django_db

PUSH = "/api/v1/sync/push"
CHANGES = "/api/v1/sync/changes?since=&limit=5"
NAMES = {
    "node": "HTTP_X_CONFIGSYNC_NODE",
    "timestamp": "HTTP_X_CONFIGSYNC_TIMESTAMP",
    "nonce": "HTTP_X_CONFIGSYNC_NONCE",
    "signature": "HTTP_X_CONFIGSYNC_SIGNATURE",
}
LATIN1 = st.text(st.characters(max_codepoint=255), max_size=80)
VALUES = st.one_of(
    LATIN1,
    TEXT,
    st.integers(-(10**13), 10**13).map(str),
    st.sampled_from(["", " ", "0", "node-remote", "node-local", "x" * 65, "f" * 64, "F" * 64]),
    st.lists(st.one_of(LATIN1, HOSTILE), max_size=4).map("".join),
)


def _send(method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return APIClient().generic(method, path, body, content_type="application/json", **headers)


@st.composite
def requests_(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str], bool]:
    """``(method, path, body, headers, exact)``: ``exact`` when nothing signed was changed."""
    push = draw(st.booleans())
    method, path = ("POST", PUSH) if push else ("GET", CHANGES)
    body = json.dumps({"changes": [remote_change("FUZZ")]}).encode() if push else b""
    headers = signed_headers(method, path, body)
    signed = (method, path, body, dict(headers))
    if draw(st.integers(0, 9)) == 0:
        return method, path, body, headers, True
    for _ in range(draw(st.integers(1, 4))):
        part = draw(st.sampled_from([*NAMES, "drop", "method", "path", "body"]))
        if part in NAMES:
            original = headers.get(NAMES[part], "")
            headers[NAMES[part]] = draw(st.one_of(VALUES, mutated([original]).map(_text_of)))
        elif part == "drop":
            headers.pop(draw(st.sampled_from(sorted(NAMES.values()))), None)
        elif part == "method" and push:
            method = "PUT"
        elif part == "path":
            path = path + draw(st.sampled_from(["&x=1", "?", "#", "/"]))
        elif part == "body" and push:
            body = body[:-2] + b" }"
    return method, path, body, headers, (method, path, body, headers) == signed


def _text_of(value: Any) -> str:
    inner = value[0] if isinstance(value, list) and value else value
    return inner if isinstance(inner, str) else json.dumps(inner)


@FUZZ
@given(request=requests_())
def test_any_signature_headers_are_refused_cleanly_unless_exactly_signed(
    request: tuple[str, str, bytes, dict[str, str], bool],
) -> None:
    method, path, body, headers, exact = request
    with transaction.atomic():
        before = state(), QuarantinedChange.objects.count(), SyncNonce.objects.count()
        response = _send(method, path, body, headers)
        status = response.status_code
        assert status in (200, 400, 401, 403, 404, 405), response.content[:300]
        if exact:
            assert status == 200
            replay = _send(method, path, body, headers)
            assert replay.status_code == 401 and b"replayed" in replay.content
        if status != 200:
            after = state(), QuarantinedChange.objects.count(), SyncNonce.objects.count()
            assert after == before
        transaction.set_rollback(True)


@FUZZ
@given(values=st.fixed_dictionaries({name: VALUES for name in NAMES}))
def test_garbage_headers_never_authenticate(values: dict[str, str]) -> None:
    headers = {NAMES[name]: value for name, value in values.items()}
    with transaction.atomic():
        response = _send("GET", CHANGES, b"", headers)
        assert response.status_code in (400, 401, 403), response.content[:300]
        assert not SyncNonce.objects.exists()
        transaction.set_rollback(True)


def test_an_exact_request_is_accepted_once() -> None:
    headers = signed_headers("GET", CHANGES)
    assert _send("GET", CHANGES, b"", headers).status_code == 200
    assert _send("GET", CHANGES, b"", headers).status_code == 401
    assert SyncNonce.objects.filter(node=REMOTE).count() == 1
