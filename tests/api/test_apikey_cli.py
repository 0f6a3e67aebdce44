"""``configsync apikey create`` prints a working key once, as the last line; scopes as asked."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from configsync.models import ServiceAPIKey

pytestmark = pytest.mark.django_db


def test_create_prints_key_last_and_it_authenticates(cli: Any, secret_setting: Any) -> None:
    result = cli("apikey", "create", "billing-worker")
    assert result.code == 0
    key = result.last_line
    record = ServiceAPIKey.objects.get(name="billing-worker")
    assert key.startswith(f"{record.prefix}.")
    assert (record.can_write, record.can_reveal) == (False, False)
    assert key not in result.err and record.prefix in result.err
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/configs/system/").status_code == 200
    assert client.post("/api/v1/configs/system/", {"key": "A", "value": "b"}).status_code == 403


def test_create_with_scopes_and_list_never_shows_key(cli: Any) -> None:
    key = cli("apikey", "create", "ops", "--write", "--reveal-secrets").last_line
    record = ServiceAPIKey.objects.get(name="ops")
    assert (record.can_write, record.can_reveal) == (True, True)
    listing = cli("apikey", "list", "--json")
    assert key.split(".", 1)[1] not in listing.out
    assert '"write"' in listing.out and '"reveal"' in listing.out


def test_revoked_key_stops_authenticating(cli: Any) -> None:
    key = cli("apikey", "create", "short-lived").last_line
    prefix = key.split(".", 1)[0]
    assert cli("apikey", "revoke", prefix).code == 0
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/configs/system/").status_code == 401
    assert "revoked" in cli("apikey", "list").out
    unknown = cli("apikey", "revoke", "no-such-prefix")
    assert unknown.code == 1 and "No API key has this name or prefix." in unknown.err


def test_create_with_empty_name_fails_and_saves_nothing(cli: Any) -> None:
    result = cli("apikey", "create", "  ")
    assert result.code == 1 and "name:" in result.err
    assert not ServiceAPIKey.objects.exists()
