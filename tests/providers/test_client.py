"""client_settings, get_ai_config and the connection test against a local stub server."""

from __future__ import annotations

import pytest

from configsync.exceptions import ConfigKeyError
from providers import client_settings, get_ai_config
from providers.client import provider_test_connection
from providers.services import ai_provider_set
from tests.support.providers import GOOD_KEY, StubProvider

pytestmark = pytest.mark.django_db


def test_client_settings_per_kind(canary: str) -> None:
    ai_provider_set(name="o", kind="openai", api_key=canary, organization="org-1")
    ai_provider_set(name="a", kind="anthropic", api_key=canary)
    ai_provider_set(name="g", kind="google", api_key=canary)
    ai_provider_set(
        name="az",
        kind="azure_openai",
        api_key=canary,
        endpoint="https://x.openai.azure.com",
        deployment="gpt4o",
    )
    ai_provider_set(name="ol", kind="ollama")
    assert client_settings("o") == {
        "api_key": canary,
        "base_url": "https://api.openai.com/v1",
        "organization": "org-1",
    }
    assert client_settings("a") == {"api_key": canary, "base_url": "https://api.anthropic.com"}
    assert client_settings("g") == {"api_key": canary}
    assert client_settings("az") == {
        "api_key": canary,
        "azure_endpoint": "https://x.openai.azure.com",
        "api_version": "2024-10-21",
        "azure_deployment": "gpt4o",
    }
    assert client_settings("ol") == {"host": "http://127.0.0.1:11434"}


def test_get_ai_config_typed_and_missing(canary: str) -> None:
    ai_provider_set(name="openai-main", kind="openai", api_key=canary)
    data = get_ai_config("openai-main")
    assert data["api_key"] == canary
    assert data["enabled"] is True
    assert get_ai_config("openai-main", "default_model") == "gpt-4o-mini"
    data["api_key"] = "mutated"
    assert get_ai_config("openai-main", "api_key") == canary
    with pytest.raises(ConfigKeyError, match="nope"):
        get_ai_config("nope")
    with pytest.raises(KeyError, match=r"openai-main\.colour"):
        get_ai_config("openai-main", "colour")


def test_rotated_key_is_seen(canary: str) -> None:
    ai_provider_set(name="openai-main", kind="openai", api_key=canary)
    assert get_ai_config("openai-main", "api_key") == canary
    ai_provider_set(name="openai-main", api_key="sk-CANARY-rotated")
    assert get_ai_config("openai-main", "api_key") == "sk-CANARY-rotated"


@pytest.mark.parametrize(
    ("kind", "extra", "path", "header"),
    [
        ("openai", {}, "/models", "Authorization"),
        ("anthropic", {}, "/v1/models", "x-api-key"),
        ("google", {}, "/v1beta/models", "x-goog-api-key"),
        ("azure_openai", {"deployment": "d"}, "/openai/models?api-version=2024-10-21", "api-key"),
    ],
)
def test_connection_success_per_kind(
    stub_provider: StubProvider, kind: str, extra: dict, path: str, header: str
) -> None:
    url_field = "endpoint" if kind == "azure_openai" else "base_url"
    ai_provider_set(
        name="p", kind=kind, api_key=GOOD_KEY, **{url_field: stub_provider.base_url}, **extra
    )
    result = provider_test_connection(name="p", timeout=5)
    assert result.ok, result.detail
    assert "2 models" in result.detail
    assert stub_provider.requests[0]["path"] == path
    assert GOOD_KEY in stub_provider.requests[0]["headers"][header]


def test_connection_ollama(stub_provider: StubProvider) -> None:
    ai_provider_set(name="local", kind="ollama", base_url=stub_provider.base_url)
    result = provider_test_connection(name="local")
    assert result.ok
    assert stub_provider.requests[0]["path"] == "/api/tags"


def test_connection_rejected_key_reports_reason_without_key(stub_provider: StubProvider) -> None:
    ai_provider_set(
        name="p", kind="openai", api_key="sk-CANARY-wrong", base_url=stub_provider.base_url
    )
    result = provider_test_connection(name="p")
    assert not result.ok
    assert result.status_code == 401
    assert "credentials" in result.detail
    assert "sk-CANARY" not in result.detail


def test_connection_timeout(stub_provider: StubProvider) -> None:
    stub_provider.delay_seconds = 5
    ai_provider_set(name="p", kind="openai", api_key=GOOD_KEY, base_url=stub_provider.base_url)
    result = provider_test_connection(name="p", timeout=0.3)
    assert not result.ok
    assert "No answer" in result.detail


def test_connection_refused() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ai_provider_set(name="p", kind="openai", api_key=GOOD_KEY, base_url=f"http://127.0.0.1:{port}")
    result = provider_test_connection(name="p", timeout=2)
    assert not result.ok
    assert "Could not connect" in result.detail
    assert GOOD_KEY not in result.detail


def test_connection_sends_each_kind_s_own_headers(stub_provider: StubProvider) -> None:
    base = stub_provider.base_url
    ai_provider_set(name="o", kind="openai", api_key=GOOD_KEY, base_url=base, organization="org-9")
    ai_provider_set(name="a", kind="anthropic", api_key=GOOD_KEY, base_url=base)
    assert provider_test_connection(name="o").ok and provider_test_connection(name="a").ok
    openai, anthropic = (request["headers"] for request in stub_provider.requests)
    assert openai["Authorization"] == f"Bearer {GOOD_KEY}"
    assert openai["OpenAI-Organization"] == "org-9"
    assert anthropic["anthropic-version"] == "2023-06-01" and "Authorization" not in anthropic
