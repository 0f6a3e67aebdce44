"""API-key verification cached in process: a usable key costs no query once verified, and every
change of any key (revoke, scopes, expiry, delete) takes effect at once in this process.

Other processes: ``tests/lookup/test_cross_process.py`` (a revoke and a scope change made by one
process refuse the key in another). Failures are never cached: a wrong, unknown, revoked or
expired key costs a query each time and leaves nothing behind.
"""

from __future__ import annotations

import string
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from configsync.api.authentication import API_KEY_NAMESPACE, EXPIRED, INVALID, REVOKED
from configsync.lookup import lookup_cache
from configsync.models import ServiceAPIKey
from configsync.services.api_keys import (
    api_key_create,
    api_key_delete,
    api_key_revoke,
    api_key_update,
)
from configsync.services.system_config import system_config_set

pytestmark = pytest.mark.django_db

SETTING = "/api/v1/configs/system/PLAIN/"


@pytest.fixture(autouse=True)
def _setting(settings) -> None:  # type: ignore[no-untyped-def]
    settings.REDIS_URL = ""  # no listener whose (re)subscribe would clear the cache meanwhile
    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 3600
    lookup_cache._next_check = 0.0
    lookup_cache.get("warm-up", "", lambda key: None)  # the version check: now, not in a call
    system_config_set(key="PLAIN", value="visible")


def call(key: str, **params: str) -> tuple[int, str, int]:
    """Status, 401/403 detail and the number of queries of one GET with ``key``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(SETTING, params)
    body = response.json()
    detail = body.get("detail", "") if response.status_code >= 400 else ""
    return response.status_code, detail, len(queries)


def cached_prefixes() -> set[object]:
    return {key for space, key in lookup_cache._data if space == API_KEY_NAMESPACE}


def change(record: ServiceAPIKey, **fields: object) -> None:
    current = {
        "name": record.name,
        "can_write": record.can_write,
        "can_reveal": record.can_reveal,
        "expiry_date": record.expiry_date,
        "revoked": False,
    }
    api_key_update(prefix=record.prefix, **{**current, **fields})  # type: ignore[arg-type]


def test_a_verified_key_costs_no_query() -> None:
    record, key = api_key_create(name="svc")
    assert call(key)[0] == 200
    assert [call(key) for _ in range(5)] == [(200, "", 0)] * 5
    assert cached_prefixes() == {record.prefix}


def test_a_revoked_key_is_refused_at_once() -> None:
    record, key = api_key_create(name="svc")
    call(key)
    assert call(key) == (200, "", 0)
    api_key_revoke(prefix=record.prefix)
    assert call(key)[:2] == (401, REVOKED)
    assert call(key)[:2] == (401, REVOKED)  # and is not cached as usable again


def test_a_deleted_key_is_refused_at_once() -> None:
    record, key = api_key_create(name="svc")
    call(key)
    api_key_delete(prefix=record.prefix)
    assert call(key)[:2] == (401, INVALID)


def test_a_scope_change_takes_effect_at_once() -> None:
    record, key = api_key_create(name="svc", can_reveal=True)
    assert call(key, reveal="true")[0] == 200
    assert call(key, reveal="true")[0] == 200
    change(record, can_reveal=False)
    assert call(key, reveal="true")[0] == 403
    change(record, can_reveal=True)
    assert call(key, reveal="true")[0] == 200


def test_an_expiry_set_or_reached_while_cached_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _, key = api_key_create(name="svc", expiry_date=timezone.now() + timedelta(hours=1))
    call(key)
    assert call(key) == (200, "", 0)
    # The hour passes without any change of the key: the cached record is judged now.
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert call(key)[:2] == (401, EXPIRED)
    monkeypatch.undo()
    other, other_key = api_key_create(name="other")
    call(other_key)
    change(other, expiry_date=timezone.now() - timedelta(seconds=1))
    assert call(other_key)[:2] == (401, EXPIRED)


def test_a_wrong_secret_under_a_cached_prefix_costs_a_query_and_changes_nothing() -> None:
    record, key = api_key_create(name="svc")
    call(key)
    wrong = f"{record.prefix}.sk-CANARY-wrong-secret"
    for _ in range(3):
        status, detail, queries = call(wrong)
        assert (status, detail) == (401, INVALID)
        assert queries == 1  # as without a cache
    assert call(key) == (200, "", 0)  # the right key is still served from the cache


def test_failures_leave_nothing_in_the_cache() -> None:
    revoked, revoked_key = api_key_create(name="revoked")
    api_key_revoke(prefix=revoked.prefix)
    expired, expired_key = api_key_create(name="expired")
    change(expired, expiry_date=timezone.now() - timedelta(seconds=1))
    letters = string.ascii_letters
    unknown = [f"{letters[i : i + 8]}.sk-CANARY-unknown-{i}" for i in range(40)]
    for key in [*unknown, revoked_key, expired_key, "no-dot-at-all", "."]:
        status, _, queries = call(key)
        assert status == 401
        assert queries == 1
    assert cached_prefixes() == set()


def test_request_auth_is_a_copy_of_the_cached_record() -> None:
    """Whatever a request does with ``request.auth`` cannot grant the next one anything."""
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from configsync.api.authentication import ApiKeyAuthentication

    _, key = api_key_create(name="svc")
    request = Request(APIRequestFactory().get(SETTING, HTTP_AUTHORIZATION=f"Api-Key {key}"))
    _, first = ApiKeyAuthentication().authenticate(request)  # type: ignore[misc]
    first.can_reveal = True
    request = Request(APIRequestFactory().get(SETTING, HTTP_AUTHORIZATION=f"Api-Key {key}"))
    _, second = ApiKeyAuthentication().authenticate(request)  # type: ignore[misc]
    assert second is not first and second.can_reveal is False
