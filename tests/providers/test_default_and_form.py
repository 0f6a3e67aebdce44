"""The default provider, disabled providers, and the admin form: per-kind fields and the
"Test connection" button (against the local stub provider)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client

from configsync.exceptions import ConfigKeyError
from providers import client_settings, get_ai_config
from providers.client import ProviderDisabled
from providers.models import AIProviderConfig
from providers.registry import KINDS, OPTION_FIELDS
from providers.services import DISABLED_DEFAULT, ai_provider_set
from tests.support.providers import GOOD_KEY, StubProvider

pytestmark = pytest.mark.django_db


def test_get_ai_config_without_a_name_is_the_default_provider(canary: str) -> None:
    with pytest.raises(ConfigKeyError, match="default AI provider"):
        get_ai_config()
    ai_provider_set(name="first", kind="openai", api_key=canary, is_default=True)
    ai_provider_set(name="second", kind="ollama")
    assert get_ai_config()["name"] == "first"
    assert get_ai_config(field="api_key") == canary
    ai_provider_set(name="second", is_default=True)  # the cache follows the change
    assert get_ai_config()["name"] == "second"
    assert get_ai_config(field="base_url") == "http://127.0.0.1:11434"
    assert get_ai_config("first")["is_default"] is False


def test_a_disabled_provider_cannot_be_the_default(canary: str) -> None:
    with pytest.raises(ValidationError) as created:
        ai_provider_set(name="off", kind="ollama", enabled=False, is_default=True)
    assert created.value.message_dict == {"is_default": [DISABLED_DEFAULT]}
    assert not AIProviderConfig.objects.exists()

    ai_provider_set(name="main", kind="ollama", is_default=True)
    with pytest.raises(ValidationError, match="cannot be the default"):
        ai_provider_set(name="main", enabled=False)
    assert AIProviderConfig.objects.get(name="main").enabled
    ai_provider_set(name="other", kind="ollama", is_default=True)
    ai_provider_set(name="main", enabled=False)  # no longer the default: allowed
    assert not AIProviderConfig.objects.get(name="main").enabled


def test_client_settings_of_a_disabled_provider_is_a_clear_error(canary: str) -> None:
    ai_provider_set(name="paused", kind="openai", api_key=canary, enabled=False)
    with pytest.raises(ProviderDisabled) as raised:
        client_settings("paused")
    message = str(raised.value)
    assert "'paused' is disabled" in message and "--enable" in message
    assert canary not in message
    ai_provider_set(name="paused", enabled=True)
    assert client_settings("paused")["api_key"] == canary


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def _kinds_of_fields(html: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for tag in re.findall(r"<(?:input|select|textarea|div)\b[^>]*>", html):
        name = re.search(r'\b(?:name|data-provider-field)="([^"]+)"', tag)
        kinds = re.search(r'data-provider-kinds="([^"]*)"', tag)
        if name and kinds:
            found[name.group(1)] = set(kinds.group(1).split())
    return found


def test_admin_form_marks_each_field_with_the_kinds_that_use_it(
    admin_client: Client, canary: str
) -> None:
    page = admin_client.get("/admin/providers/aiproviderconfig/add/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "providers/kind_fields.js" in html
    kinds = _kinds_of_fields(html)
    assert kinds["organization"] == {"openai"}
    assert kinds["endpoint"] == kinds["deployment"] == kinds["api_version"] == {"azure_openai"}
    assert "ollama" not in kinds["api_key"] and "ollama" in kinds["base_url"]
    for name in OPTION_FIELDS:
        assert kinds[name] == {k for k, spec in KINDS.items() if name in spec.allowed}
    assert "Test connection</button>" not in html  # nothing saved to test yet

    record = ai_provider_set(
        name="az",
        kind="azure_openai",
        api_key=canary,
        endpoint="https://example.openai.azure.com",
        deployment="gpt-4o",
    )
    changed = admin_client.get(f"/admin/providers/aiproviderconfig/{record.pk}/change/")
    text = changed.content.decode()
    shown = {name for name, used in _kinds_of_fields(text).items() if "azure_openai" in used}
    assert shown == set(KINDS["azure_openai"].allowed)
    assert canary not in text


def test_test_connection_button_reports_the_stub_result(
    admin_client: Client, stub_provider: StubProvider
) -> None:
    good = ai_provider_set(
        name="good", kind="openai", api_key=GOOD_KEY, base_url=stub_provider.base_url
    )
    bad = ai_provider_set(
        name="bad", kind="openai", api_key="sk-CANARY-wrong", base_url=stub_provider.base_url
    )
    change = f"/admin/providers/aiproviderconfig/{good.pk}/change/"
    html = admin_client.get(change).content.decode()
    action = f"/admin/providers/aiproviderconfig/{good.pk}/test-connection/"
    assert f'formaction="{action}"' in html and "Test connection</button>" in html

    assert admin_client.get(action).status_code == 405
    response = admin_client.post(action, follow=True)
    text = response.content.decode()
    assert response.redirect_chain[-1][0] == change
    assert "Good: Connected (HTTP 200; 2 models listed)." in text  # the admin capitalises
    assert stub_provider.requests[-1]["path"] == "/models"

    response = admin_client.post(
        f"/admin/providers/aiproviderconfig/{bad.pk}/test-connection/", follow=True
    )
    text = response.content.decode()
    assert "Bad: Rejected the credentials (HTTP 401)." in text
    assert GOOD_KEY not in text and "sk-CANARY-wrong" not in text


def test_test_connection_needs_the_change_permission(stub_provider: StubProvider) -> None:
    record = ai_provider_set(name="p", kind="ollama", base_url=stub_provider.base_url)
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    response = client.post(f"/admin/providers/aiproviderconfig/{record.pk}/test-connection/")
    assert response.status_code == 403
    assert stub_provider.requests == []


def test_admin_form_refuses_a_disabled_default(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/providers/aiproviderconfig/add/",
        {"name": "off", "kind": "ollama", "base_url": "http://127.0.0.1:11434", "is_default": "on"},
    )
    assert response.status_code == 200
    assert "A disabled provider cannot be the default." in response.content.decode()
    assert not AIProviderConfig.objects.exists()
