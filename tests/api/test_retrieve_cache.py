"""A retrieve without reveal is answered from the lookup cache; a reveal never is.

The cache holds the masked body and the ETag of a record as last loaded (``configsync.lookup``);
these tests prove it answers without the database when warm, holds no secret, is dropped by every
change (here and, through the version counter, from another process), keeps ETag/If-Match as
they were, and that a reveal still reads, decrypts and audits per request (fail-closed).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from configsync.lookup import lookup_cache
from configsync.models import AuditEvent, LookupVersion, SystemConfig
from configsync.services.system_config import system_config_set
from configsync.versioning import record_etag
from providers.models import AIProviderConfig

pytestmark = pytest.mark.django_db

SYSTEM = "/api/v1/configs/system/"
PROVIDERS = "/api/v1/configs/ai-providers/"


def cached_keys(namespace: str) -> set[object]:
    return {key for space, key in lookup_cache._data if space == namespace}


@pytest.fixture
def reader(client_for: Callable[[str], APIClient]) -> APIClient:
    return client_for("read")


def test_a_warm_retrieve_touches_no_database(
    reader: APIClient, plain_setting: SystemConfig, django_assert_num_queries, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.REDIS_URL = ""  # no listener whose (re)subscribe would clear the cache meanwhile
    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 3600
    url = f"{SYSTEM}MAX_WORKERS/"
    first = reader.get(url)
    assert first.status_code == 200
    with django_assert_num_queries(0):  # API key and record both from the cache
        for _ in range(20):
            again = reader.get(url)
            assert again.status_code == 200
            assert again.json() == first.json()
            assert again["ETag"] == first["ETag"]
    assert first["ETag"] == record_etag(SystemConfig.objects.get(key="MAX_WORKERS"))
    assert first.json()["value"] == 4


def test_the_cached_body_of_a_secret_is_masked_and_a_reveal_is_audited_each_time(
    client_for: Callable[[str], APIClient], secret_setting: SystemConfig, canary: str
) -> None:
    revealer = client_for("reveal")
    url = f"{SYSTEM}OPENAI_API_KEY/"
    for client in (client_for("read"), revealer, client_for("read")):
        masked = client.get(url)
        assert masked.status_code == 200
        assert masked.json()["value"] == "********" and masked.json()["revealed"] is False
        assert canary.encode() not in masked.content
    entry = lookup_cache._data["api:system", "OPENAI_API_KEY"]
    assert canary not in repr(entry)
    for count in (1, 2):
        revealed = revealer.get(url, {"reveal": "true"})
        assert revealed.json()["value"] == canary
        assert AuditEvent.objects.filter(action="reveal").count() == count
    assert client_for("read").get(url, {"reveal": "true"}).status_code == 403
    after = client_for("read").get(url)  # a reveal leaves the cached body masked
    assert canary.encode() not in after.content


def test_a_reveal_of_a_cached_record_still_fails_closed(
    client_for: Callable[[str], APIClient],
    secret_setting: SystemConfig,
    canary: str,
    request: pytest.FixtureRequest,
) -> None:
    revealer = client_for("reveal")
    url = f"{SYSTEM}OPENAI_API_KEY/"
    assert revealer.get(url).status_code == 200  # warm: body and key cached
    request.getfixturevalue("audit_down")  # from here on every audit insert fails
    refused = revealer.get(url, {"reveal": "true"})
    assert refused.status_code == 503
    assert canary.encode() not in refused.content


def test_a_change_here_is_served_at_once_with_its_new_etag(
    client_for: Callable[[str], APIClient], plain_setting: SystemConfig
) -> None:
    writer = client_for("write")
    url = f"{SYSTEM}MAX_WORKERS/"
    old = writer.get(url)["ETag"]
    patched = writer.patch(url, {"value": 5}, format="json", HTTP_IF_MATCH=old)
    assert patched.status_code == 200
    fetched = writer.get(url)
    assert fetched.json()["value"] == 5
    assert fetched["ETag"] == patched["ETag"] != old
    # The ETag read from the cache is what If-Match compares against.
    assert writer.patch(url, {"value": 6}, format="json", HTTP_IF_MATCH=old).status_code == 412
    assert (
        writer.patch(url, {"value": 6}, format="json", HTTP_IF_MATCH=fetched["ETag"]).status_code
        == 200
    )
    system_config_set(key="MAX_WORKERS", value=7)  # a service write, not through the API
    assert writer.get(url).json()["value"] == 7
    writer.delete(url)
    assert writer.get(url).status_code == 404


def test_if_none_match_is_still_not_a_conditional_get(
    reader: APIClient, plain_setting: SystemConfig
) -> None:
    """Unchanged behaviour: the API answers no 304; a cached retrieve is a 200 with its ETag."""
    url = f"{SYSTEM}MAX_WORKERS/"
    etag = reader.get(url)["ETag"]
    again = reader.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 200 and again["ETag"] == etag


def test_a_change_by_another_process_is_seen_after_the_version_check(
    reader: APIClient, plain_setting: SystemConfig, settings
) -> None:  # type: ignore[no-untyped-def]
    """Another process changed the row (no signal here) and bumped the version counter."""
    settings.REDIS_URL = ""
    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 3600
    url = f"{SYSTEM}MAX_WORKERS/"
    assert reader.get(url).json()["value"] == 4
    SystemConfig.objects.filter(key="MAX_WORKERS").update(value="9")
    assert reader.get(url).json()["value"] == 4  # still the cached body: no check due yet
    LookupVersion.objects.update_or_create(pk=1, defaults={"counter": 10_000})
    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 0
    lookup_cache._next_check = 0.0
    assert reader.get(url).json()["value"] == 9


def test_an_unknown_key_is_not_cached(reader: APIClient) -> None:
    for _ in range(3):
        assert reader.get(f"{SYSTEM}NOT_THERE_1/").status_code == 404
    assert reader.get(f"{SYSTEM}NOT_THERE_2/").status_code == 404
    assert cached_keys("api:system") == set()
    system_config_set(key="NOT_THERE_1", value="now it is")
    assert reader.get(f"{SYSTEM}NOT_THERE_1/").json()["value"] == "now it is"


def test_a_response_cannot_alter_the_cached_body(reader: APIClient) -> None:
    system_config_set(key="J", value={"a": [1]}, value_type="json")
    url = f"{SYSTEM}J/"
    first = reader.get(url)
    first.data["value"]["a"].append(2)
    first.data["description"] = "changed by a caller"
    again = reader.get(url).json()
    assert again["value"] == {"a": [1]} and again["description"] == ""


def test_a_provider_retrieve_is_cached_masked_and_invalidated(
    client_for: Callable[[str], APIClient],
    secret_provider: AIProviderConfig,
    canary: str,
    django_assert_num_queries,
    settings,
) -> None:  # type: ignore[no-untyped-def]
    from providers.services import ai_provider_set

    settings.REDIS_URL = ""
    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 3600
    reader = client_for("read")
    url = f"{PROVIDERS}openai-main/"
    first = reader.get(url)
    assert first.json()["api_key"] == "********" and canary.encode() not in first.content
    with django_assert_num_queries(0):
        assert reader.get(url).json() == first.json()
    ai_provider_set(name="openai-main", default_model="gpt-4o-mini")
    changed = reader.get(url)
    assert changed.json()["default_model"] == "gpt-4o-mini"
    assert changed["ETag"] != first["ETag"]
    revealed = client_for("reveal").get(url, {"reveal": "true"})
    assert revealed.json()["api_key"] == canary
    assert AuditEvent.objects.filter(action="reveal").count() == 1


def test_the_cache_writes_nothing_to_redis_or_the_django_cache(
    secret_setting: SystemConfig, canary: str, settings
) -> None:  # type: ignore[no-untyped-def]
    """Plaintext and API-key material stay in process memory (throttling on, so the default
    cache — Redis with ``REDIS_URL`` — is written to, and looked through)."""
    from configsync.services.api_keys import api_key_create

    record, key = api_key_create(name="probe", can_reveal=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    caches["default"].clear()
    settings.REST_FRAMEWORK_THROTTLE_DISABLED = False
    try:
        for params in ({}, {"reveal": "true"}, {}):
            assert client.get(f"{SYSTEM}OPENAI_API_KEY/", params).status_code == 200
        stored = dump_default_cache()
    finally:
        caches["default"].clear()
    secret = key.partition(".")[2]
    assert stored, "the throttle wrote its window: the probe looks at the right store"
    for material in (canary, secret, record.hashed_key, record.hashed_key.split("$")[-1]):
        assert material.encode() not in stored


def dump_default_cache() -> bytes:
    """Every key and value in the default cache (Redis or local memory), as bytes."""
    backend = caches["default"]
    if hasattr(backend, "_cache") and hasattr(backend._cache, "get_client"):
        client = backend._cache.get_client(write=True)
        out = b""
        for name in client.scan_iter():
            kind = client.type(name)
            if kind == b"list":
                value = b"|".join(client.lrange(name, 0, -1))
            elif kind == b"string":
                value = client.get(name) or b""
            else:
                value = repr(kind).encode()
            out += name + b"=" + value + b"\n"
        return out
    return repr(dict(backend._cache)).encode()  # LocMemCache: pickled values by key
