"""The admin's "test connection" action reports each provider's result without its key."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from providers.services import ai_provider_set
from tests.support.providers import GOOD_KEY, StubProvider

pytestmark = pytest.mark.django_db


def test_admin_action_reports_success_and_failure(stub_provider: StubProvider) -> None:
    ai_provider_set(name="good", kind="openai", api_key=GOOD_KEY, base_url=stub_provider.base_url)
    ai_provider_set(
        name="bad", kind="openai", api_key="sk-CANARY-wrong", base_url=stub_provider.base_url
    )
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)
    from providers.models import AIProviderConfig

    ids = list(AIProviderConfig.objects.values_list("pk", flat=True))
    response = client.post(
        "/admin/providers/aiproviderconfig/",
        {"action": "admin_test_connection", "_selected_action": ids},
        follow=True,
    )
    text = response.content.decode().lower()
    assert response.status_code == 200
    assert "good: connected" in text
    assert "bad: rejected the credentials" in text
    assert GOOD_KEY.lower() not in text and "sk-canary-wrong" not in text
