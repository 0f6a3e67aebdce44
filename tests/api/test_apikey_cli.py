"""``configsync apikey create`` prints a working key once, as the last line; scopes as asked."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from configsync.models import ServiceAPIKey

pytestmark = pytest.mark.django_db


def _create(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("configsync", "apikey", "create", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_prints_key_last_and_it_authenticates(secret_setting) -> None:  # type: ignore[no-untyped-def]
    out, err = _create("billing-worker")
    key = out.strip().splitlines()[-1]
    record = ServiceAPIKey.objects.get(name="billing-worker")
    assert key.startswith(f"{record.prefix}.")
    assert (record.can_write, record.can_reveal) == (False, False)
    assert key not in err
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/configs/system/").status_code == 200
    assert client.post("/api/v1/configs/system/", {"key": "A", "value": "b"}).status_code == 403


def test_create_with_scopes_and_list_never_shows_key() -> None:
    out, _ = _create("ops", "--write", "--reveal-secrets")
    key = out.strip().splitlines()[-1]
    record = ServiceAPIKey.objects.get(name="ops")
    assert (record.can_write, record.can_reveal) == (True, True)
    listing = io.StringIO()
    call_command("configsync", "apikey", "list", "--json", stdout=listing)
    assert key.split(".", 1)[1] not in listing.getvalue()
    assert '"write"' in listing.getvalue() and '"reveal"' in listing.getvalue()


def test_create_with_empty_name_fails_and_saves_nothing() -> None:
    with pytest.raises(SystemExit) as info:
        _create("  ")
    assert info.value.code == 1
    assert not ServiceAPIKey.objects.exists()
