"""Fixtures of the config API tests: one client per role, records holding canary secrets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from configsync.services.api_keys import api_key_create
from tests.providers.conftest import stub_provider

__all__ = ["stub_provider"]

ROLES = ("anonymous", "read", "write", "reveal", "admin")
"""anonymous: no credentials; read/write/reveal: API keys holding that scope (read is implied);
admin: a staff user's Django session."""


def key_client(*, write: bool = False, reveal: bool = False, name: str = "svc") -> APIClient:
    _, key = api_key_create(name=name, can_write=write, can_reveal=reveal)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def client_for(db: None) -> Callable[[str], APIClient]:
    """``client_for(role)``: an APIClient authenticated as ``role`` (one of ``ROLES``)."""

    def make(role: str) -> APIClient:
        if role == "anonymous":
            return APIClient()
        if role == "read":
            return key_client(name="reader")
        if role == "write":
            return key_client(write=True, name="writer")
        if role == "reveal":
            return key_client(reveal=True, name="revealer")
        if role == "admin":
            user = get_user_model().objects.create_user(
                username="admin", password="unused-in-tests", is_staff=True
            )
            client = APIClient()
            client.force_login(user)
            return client
        raise ValueError(role)

    return make


@pytest.fixture
def secret_setting(canary: str, db: None):  # type: ignore[no-untyped-def]
    from configsync.services.system_config import system_config_set

    return system_config_set(key="OPENAI_API_KEY", value=canary, is_sensitive=True)


@pytest.fixture
def plain_setting(db: None):  # type: ignore[no-untyped-def]
    from configsync.services.system_config import system_config_set

    return system_config_set(key="MAX_WORKERS", value=4, value_type="int", category="workers")


@pytest.fixture
def secret_provider(canary: str, db: None):  # type: ignore[no-untyped-def]
    from providers.services import ai_provider_set

    return ai_provider_set(name="openai-main", kind="openai", api_key=canary)
