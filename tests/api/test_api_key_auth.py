"""``Authorization: Api-Key``: a 401 says whether the key is unknown, revoked or expired, and
never holds any part of the key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from configsync.api.authentication import EXPIRED, INVALID, REVOKED
from configsync.models import ServiceAPIKey
from configsync.services.api_keys import api_key_create, api_key_revoke, api_key_update

pytestmark = pytest.mark.django_db

URL = "/api/v1/configs/system/"


def call(key: str) -> tuple[int, str, str]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    response = client.get(URL)
    body = response.json()
    detail = body.get("detail", "") if isinstance(body, dict) else ""
    return response.status_code, detail, response.content.decode()


def expire(record: ServiceAPIKey) -> None:
    api_key_update(
        prefix=record.prefix,
        name=record.name,
        can_write=record.can_write,
        can_reveal=record.can_reveal,
        expiry_date=timezone.now() - timedelta(seconds=1),
        revoked=False,
    )


def assert_no_part_of(key: str, text: str) -> None:
    prefix, _, secret = key.partition(".")
    assert key not in text and secret not in text and prefix not in text


def test_usable_key_with_a_future_expiry_authenticates() -> None:
    _, key = api_key_create(name="svc", expiry_date=timezone.now() + timedelta(days=1))
    assert call(key)[0] == 200


def test_unknown_key_is_invalid() -> None:
    key = "AbCd1234.sk-CANARY-not-a-stored-secret"
    status, detail, body = call(key)
    assert (status, detail) == (401, INVALID)
    assert_no_part_of(key, body)


def test_wrong_secret_of_a_revoked_key_is_only_invalid() -> None:
    """Revoked and expired are told only to a caller holding the whole key."""
    record, key = api_key_create(name="svc")
    api_key_revoke(prefix=record.prefix)
    status, detail, _ = call(f"{record.prefix}.sk-CANARY-wrong-secret")
    assert (status, detail) == (401, INVALID)
    assert call(key)[:2] == (401, REVOKED)


def test_revoked_key_answers_revoked() -> None:
    record, key = api_key_create(name="svc", can_write=True)
    assert call(key)[0] == 200
    api_key_revoke(prefix=record.prefix)
    status, detail, body = call(key)
    assert (status, detail) == (401, REVOKED)
    assert_no_part_of(key, body)


def test_expired_key_answers_expired() -> None:
    record, key = api_key_create(name="svc")
    assert call(key)[0] == 200
    expire(record)
    status, detail, body = call(key)
    assert (status, detail) == (401, EXPIRED)
    assert_no_part_of(key, body)


def test_revoked_and_expired_key_answers_revoked() -> None:
    record, key = api_key_create(name="svc")
    expire(record)
    api_key_revoke(prefix=record.prefix)
    assert call(key)[:2] == (401, REVOKED)


def test_messages_are_the_issue_s_words() -> None:
    assert (INVALID, REVOKED, EXPIRED) == (
        "Invalid API key.",
        "API key revoked.",
        "API key expired.",
    )
