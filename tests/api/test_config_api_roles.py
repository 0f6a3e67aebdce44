"""Every config endpoint for every role: status codes and that no secret leaks without reveal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from configsync.models import AuditEvent, SystemConfig
from providers.models import AIProviderConfig
from tests.support.api import ROLES

pytestmark = pytest.mark.usefixtures("secret_setting", "plain_setting", "secret_provider")

SYSTEM = "/api/v1/configs/system/"
PROVIDERS = "/api/v1/configs/ai-providers/"

READS = [
    (SYSTEM, {}),
    (f"{SYSTEM}OPENAI_API_KEY/", {}),
    (f"{SYSTEM}MAX_WORKERS/", {}),
    (PROVIDERS, {}),
    (f"{PROVIDERS}openai-main/", {}),
    (f"{SYSTEM}OPENAI_API_KEY/", {"reveal": "false"}),
]
REVEALS = [
    (SYSTEM, "configsync.systemconfig"),
    (f"{SYSTEM}OPENAI_API_KEY/", "configsync.systemconfig"),
    (PROVIDERS, "providers.aiproviderconfig"),
    (f"{PROVIDERS}openai-main/", "providers.aiproviderconfig"),
]
READ_STATUS = {"anonymous": 401, "read": 200, "write": 200, "reveal": 200, "admin": 200}
REVEAL_STATUS = {"anonymous": 401, "read": 403, "write": 403, "reveal": 200, "admin": 200}
WRITE_OK = {"write", "admin"}


def writes() -> list[tuple[str, str, dict, int]]:
    """(method, url, body, success status) of every write endpoint."""
    return [
        ("post", SYSTEM, {"key": "NEW_SETTING", "value": "x"}, 201),
        ("put", f"{SYSTEM}MAX_WORKERS/", {"value": 8}, 200),
        ("patch", f"{SYSTEM}MAX_WORKERS/", {"value": 9}, 200),
        ("delete", f"{SYSTEM}MAX_WORKERS/", {}, 204),
        ("post", PROVIDERS, {"name": "ollama-1", "kind": "ollama"}, 201),
        ("put", f"{PROVIDERS}openai-main/", {"kind": "openai", "default_model": "gpt-x"}, 200),
        ("patch", f"{PROVIDERS}openai-main/", {"default_model": "gpt-y"}, 200),
        ("delete", f"{PROVIDERS}openai-main/", {}, 204),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_reads_by_role_never_leak_the_canary(
    role: str, client_for: Callable[[str], APIClient], canary: str
) -> None:
    client = client_for(role)
    for url, params in READS:
        response = client.get(url, params)
        assert response.status_code == READ_STATUS[role], (url, response.content)
        assert canary.encode() not in response.content
        if role == "anonymous":
            assert response["WWW-Authenticate"] == "Api-Key"
    assert AuditEvent.objects.filter(action="reveal").count() == 0


@pytest.mark.parametrize("role", ROLES)
def test_reveal_by_role_is_audited_before_plaintext(
    role: str, client_for: Callable[[str], APIClient], canary: str
) -> None:
    client = client_for(role)
    for url, model_label in REVEALS:
        before = AuditEvent.objects.filter(action="reveal", model_label=model_label).count()
        response = client.get(url, {"reveal": "true"})
        assert response.status_code == REVEAL_STATUS[role], url
        after = AuditEvent.objects.filter(action="reveal", model_label=model_label).count()
        if response.status_code == 200:
            assert canary.encode() in response.content
            assert after == before + 1
        else:
            assert canary.encode() not in response.content
            assert after == before
    events = AuditEvent.objects.filter(action="reveal").all()
    for event in events:
        assert canary not in f"{event.actor}{event.natural_key}{event.model_label}"
        assert event.action == "reveal"
        assert event.actor.startswith("user:admin" if role == "admin" else "api-key:revealer")


@pytest.mark.parametrize("role", ROLES)
def test_writes_by_role(role: str, client_for: Callable[[str], APIClient], canary: str) -> None:
    client = client_for(role)
    for method, url, body, ok in writes():
        response = getattr(client, method)(url, body, format="json")
        if role == "anonymous":
            expected = 401
        elif role in WRITE_OK:
            expected = ok
        else:
            expected = 403
        assert response.status_code == expected, (method, url, response.content)
        assert canary.encode() not in response.content
    if role not in WRITE_OK:
        assert SystemConfig.objects.filter(key="MAX_WORKERS").exists()
        assert not SystemConfig.objects.filter(key="NEW_SETTING").exists()
        assert AIProviderConfig.objects.filter(name="openai-main").exists()
    else:
        assert not SystemConfig.objects.filter(key="MAX_WORKERS").exists()
        assert SystemConfig.objects.get(key="NEW_SETTING").value == "x"


def test_non_staff_session_user_is_forbidden(db: None) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="plain", password="x")
    client = APIClient()
    client.force_login(user)
    assert client.get(SYSTEM).status_code == 403


@pytest.mark.parametrize(
    "header",
    ["Api-Key nope.nope", "Api-Key", "Api-Key a b", "Api-Key \u00e9t\u00e9"],
)
def test_invalid_api_key_is_401(header: str, db: None) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(SYSTEM)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


def test_revoked_api_key_is_401(db: None) -> None:
    from configsync.services.api_keys import api_key_create, api_key_revoke

    record, key = api_key_create(name="old")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get(SYSTEM).status_code == 200
    api_key_revoke(prefix=record.prefix)
    assert client.get(SYSTEM).status_code == 401


def test_api_key_is_hashed_at_rest(db: None) -> None:
    from configsync.models import ServiceAPIKey
    from configsync.services.api_keys import api_key_create

    record, key = api_key_create(name="hashed", can_write=True)
    stored = ServiceAPIKey.objects.get(pk=record.pk)
    secret_part = key.split(".", 1)[1]
    assert secret_part not in stored.hashed_key and secret_part not in stored.id


def test_schema_and_docs_need_read_scope(client_for: Callable[[str], APIClient]) -> None:
    anonymous = client_for("anonymous")
    assert anonymous.get("/api/v1/schema/").status_code == 401
    reader = client_for("read")
    schema = reader.get("/api/v1/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/configs/system/{key}/" in paths
    assert "/api/v1/configs/ai-providers/{name}/" in paths
    assert reader.get("/api/v1/docs/").status_code == 200


def test_throttling_answers_429(client_for: Callable[[str], APIClient], settings) -> None:  # type: ignore[no-untyped-def]
    from django.core.cache import cache

    reader = client_for("read")
    settings.REST_FRAMEWORK_THROTTLE_DISABLED = False
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/min", "user": "3/min"},
    }
    cache.clear()
    try:
        codes = [reader.get(SYSTEM).status_code for _ in range(4)]
    finally:
        cache.clear()
    assert codes == [200, 200, 200, 429]
