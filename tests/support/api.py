"""API clients for the tests: one per role, authenticated as the API's callers are."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from configsync.services.api_keys import api_key_create

ROLES = ("anonymous", "read", "write", "reveal", "admin")
"""anonymous: no credentials; read/write/reveal: API keys holding that scope (read is implied);
admin: a staff user's Django session."""


def key_client(*, write: bool = False, reveal: bool = False, name: str = "svc") -> APIClient:
    """A client presenting a new API key with the given scopes (needs the database)."""
    _, key = api_key_create(name=name, can_write=write, can_reveal=reveal)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def role_client(role: str) -> APIClient:
    """A client authenticated as ``role`` (one of ``ROLES``; needs the database)."""
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
