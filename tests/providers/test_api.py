"""The AI provider API: masked keys, bad input, test-connection, and the done-when scenario."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from providers import get_ai_config
from providers.models import AIProviderConfig
from tests.support.providers import GOOD_KEY, StubProvider

PROVIDERS = "/api/v1/configs/ai-providers/"


@pytest.fixture
def writer(client_for: Callable[[str], APIClient]) -> APIClient:
    return client_for("write")


def test_create_masks_key_and_fills_defaults(writer: APIClient, canary: str) -> None:
    response = writer.post(
        PROVIDERS, {"name": "openai-main", "kind": "openai", "api_key": canary}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["api_key"] == "********"
    assert body["has_api_key"] is True
    assert body["base_url"] == "https://api.openai.com/v1"
    assert canary.encode() not in response.content
    assert response["ETag"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "sk-CANARY-kind", "api_key": "sk-CANARY-k"}, "kind"),
        ({"name": "x", "api_key": "sk-CANARY-k"}, "kind"),
        ({"name": "x", "kind": "openai"}, "api_key"),
        ({"name": "x", "kind": "ollama", "api_key": "sk-CANARY-k"}, "api_key"),
        ({"name": "Bad Name", "kind": "openai", "api_key": "sk-CANARY-k"}, "name"),
        ({"name": "x", "kind": "openai", "api_key": 12}, "api_key"),
        (
            {"name": "x", "kind": "openai", "api_key": "sk-CANARY-k", "enabled": "sk-CANARY"},
            "enabled",
        ),
    ],
)
def test_bad_provider_input(writer: APIClient, body: dict, field: str) -> None:
    response = writer.post(PROVIDERS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert b"sk-CANARY" not in response.content
    assert not AIProviderConfig.objects.exists()


def test_patch_keeps_key_and_put_needs_kind(
    writer: APIClient, secret_provider: AIProviderConfig, canary: str
) -> None:
    url = f"{PROVIDERS}openai-main/"
    assert writer.patch(url, {"default_model": "gpt-5"}, format="json").status_code == 200
    assert AIProviderConfig.objects.get(name="openai-main").api_key == canary
    assert writer.put(url, {"default_model": "gpt-5"}, format="json").status_code == 400
    stale = writer.get(url)["ETag"]
    assert writer.patch(url, {"enabled": False}, format="json").status_code == 200
    assert (
        writer.patch(url, {"enabled": True}, format="json", HTTP_IF_MATCH=stale).status_code == 412
    )
    assert AIProviderConfig.objects.get(name="openai-main").enabled is False


def test_test_connection_endpoint(
    client_for: Callable[[str], APIClient], stub_provider: StubProvider
) -> None:
    writer = client_for("write")
    writer.post(
        PROVIDERS,
        {"name": "stub", "kind": "openai", "api_key": GOOD_KEY, "base_url": stub_provider.base_url},
        format="json",
    )
    response = writer.post(f"{PROVIDERS}stub/test-connection/")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert GOOD_KEY.encode() not in response.content
    assert client_for("read").post(f"{PROVIDERS}stub/test-connection/").status_code == 403
    assert writer.post(f"{PROVIDERS}nope/test-connection/").status_code == 404


def test_service_fetches_rotated_openai_key_over_rest_and_python(
    client_for: Callable[[str], APIClient], canary: str
) -> None:
    """Done-when: a service fetches its OpenAI key with an API key and get_ai_config, rotated."""
    admin = client_for("admin")
    service = client_for("reveal")
    admin.post(
        PROVIDERS, {"name": "openai-main", "kind": "openai", "api_key": canary}, format="json"
    )
    fetched = service.get(f"{PROVIDERS}openai-main/", {"reveal": "true"}).json()
    assert fetched["api_key"] == canary
    assert get_ai_config("openai-main", "api_key") == canary
    rotated = "sk-CANARY-rotated-1"
    etag = admin.get(f"{PROVIDERS}openai-main/")["ETag"]
    assert (
        admin.patch(
            f"{PROVIDERS}openai-main/", {"api_key": rotated}, format="json", HTTP_IF_MATCH=etag
        ).status_code
        == 200
    )
    assert service.get(f"{PROVIDERS}openai-main/", {"reveal": "true"}).json()["api_key"] == rotated
    assert get_ai_config("openai-main", "api_key") == rotated
