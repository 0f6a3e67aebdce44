"""API keys in the admin: the records authentication checks, a new key shown once and working,
revocation and expiry, and who may give a key the reveal scope."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from configsync.models import ServiceAPIKey
from configsync.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db

MODEL = "configsync_serviceapikey"
KEY_IN_MESSAGE = re.compile(r'<code class="configsync-api-key">([^<]+)</code>')


def url(view: str, *args: Any) -> str:
    return reverse(f"admin:{MODEL}_{view}", args=args)


def rest_status(key: str) -> tuple[int, str]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    response = client.get("/api/v1/configs/system/")
    body = response.json()
    return response.status_code, body.get("detail", "") if isinstance(body, dict) else ""


def add(client: Client, **fields: Any) -> Any:
    data = {"name": "billing", "expiry_date_0": "", "expiry_date_1": ""}
    data.update(fields)
    return client.post(url("add"), {k: v for k, v in data.items() if v is not None}, follow=True)


def change_form(record: ServiceAPIKey, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": record.name, "expiry_date_0": "", "expiry_date_1": ""}
    if record.can_write:
        data["can_write"] = "on"
    if record.can_reveal:
        data["can_reveal"] = "on"
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def staff(*codenames: str) -> Client:
    user = get_user_model().objects.create_user(
        username="operator", password="unused-in-tests", is_staff=True
    )
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_only_servicapikey_is_registered() -> None:
    assert admin.site.is_registered(ServiceAPIKey)
    assert not admin.site.is_registered(APIKey)
    with pytest.raises(NoReverseMatch):
        reverse("admin:rest_framework_api_key_apikey_changelist")


def test_key_made_in_the_admin_is_shown_once_and_works(admin_client: Client) -> None:
    response = add(admin_client, name="billing", can_write="on")
    assert response.status_code == 200
    shown = KEY_IN_MESSAGE.findall(response.content.decode())
    assert len(shown) == 1
    key = shown[0]
    record = ServiceAPIKey.objects.get(name="billing")
    assert key.startswith(f"{record.prefix}.")
    assert (record.can_write, record.can_reveal) == (True, False)
    assert rest_status(key) == (200, "")
    # Never again: not on the next page, the list, the key's page or its history.
    for page in (url("changelist"), url("change", record.pk), url("history", record.pk)):
        text = admin_client.get(page).content.decode()
        assert key.split(".", 1)[1] not in text, page
    assert record.prefix in admin_client.get(url("changelist")).content.decode()
    for entry in LogEntry.objects.all():
        assert key not in entry.change_message + entry.object_repr
    assert record.hashed_key != key.split(".", 1)[1]


def test_cli_keys_are_listed_in_the_admin(admin_client: Client, cli: Any) -> None:
    cli("apikey", "create", "made-by-cli", "--write")
    page = admin_client.get(url("changelist")).content.decode()
    record = ServiceAPIKey.objects.get(name="made-by-cli")
    assert "made-by-cli" in page and record.prefix in page and "read, write" in page


def test_expiry_set_in_the_admin_ends_the_key(admin_client: Client) -> None:
    record, key = api_key_create(name="svc")
    past = timezone.now() - timedelta(minutes=5)
    response = admin_client.post(
        url("change", record.pk),
        change_form(
            record,
            expiry_date_0=past.strftime("%Y-%m-%d"),
            expiry_date_1=past.strftime("%H:%M:%S"),
        ),
    )
    assert response.status_code == 302
    assert rest_status(key) == (401, "API key expired.")


def test_a_new_key_cannot_be_made_already_expired(admin_client: Client) -> None:
    response = add(admin_client, expiry_date_0="2001-01-01", expiry_date_1="00:00:00")
    assert "The expiry is in the past." in response.content.decode()
    assert not ServiceAPIKey.objects.exists()


def test_revoking_in_the_admin_is_final(admin_client: Client) -> None:
    record, key = api_key_create(name="svc", can_write=True)
    response = admin_client.post(url("change", record.pk), change_form(record, revoked="on"))
    assert response.status_code == 302
    assert rest_status(key) == (401, "API key revoked.")
    page = admin_client.get(url("change", record.pk)).content.decode()
    assert 'name="revoked"' not in page and 'name="name"' not in page  # a view page now
    response = admin_client.post(url("change", record.pk), change_form(record, revoked=None))
    assert response.status_code == 403
    assert ServiceAPIKey.objects.get(pk=record.pk).revoked


def test_revoke_action(admin_client: Client) -> None:
    first, first_key = api_key_create(name="a")
    second, _ = api_key_create(name="b")
    _, kept_key = api_key_create(name="c")
    response = admin_client.post(
        url("changelist"),
        {"action": "revoke_selected", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert "Revoked 2 API key(s)." in response.content.decode()
    assert set(ServiceAPIKey.objects.filter(revoked=True).values_list("name", flat=True)) == {
        "a",
        "b",
    }
    assert rest_status(first_key) == (401, "API key revoked.")
    assert rest_status(kept_key) == (200, "")
    from django.contrib.admin.models import LogEntry

    logged = LogEntry.objects.filter(object_id__in=[str(first.pk), str(second.pk)])
    assert sorted(entry.get_change_message() for entry in logged) == ["Revoked.", "Revoked."]
    assert first_key not in str(list(logged.values()))


def test_superuser_may_give_the_reveal_scope(admin_client: Client) -> None:
    key = KEY_IN_MESSAGE.findall(add(admin_client, can_reveal="on").content.decode())[0]
    assert ServiceAPIKey.objects.get(name="billing").can_reveal
    assert rest_status(key) == (200, "")


def test_staff_without_the_grant_permission_cannot_give_reveal() -> None:
    client = staff("add_serviceapikey", "change_serviceapikey", "view_serviceapikey")
    form = client.get(url("add")).content.decode()
    assert 'name="can_reveal"' not in form and 'name="can_write"' in form
    response = add(client, can_reveal="on", can_write="on")
    assert len(KEY_IN_MESSAGE.findall(response.content.decode())) == 1
    record = ServiceAPIKey.objects.get(name="billing")
    assert (record.can_write, record.can_reveal) == (True, False)
    # Nor on a key's page; a reveal scope given by someone else is kept.
    granted, _ = api_key_create(name="granted", can_reveal=True)
    response = client.post(url("change", granted.pk), change_form(granted, can_reveal=None))
    assert response.status_code == 302
    assert ServiceAPIKey.objects.get(pk=granted.pk).can_reveal
    response = client.post(url("change", record.pk), change_form(record, can_reveal="on"))
    assert response.status_code == 302
    assert not ServiceAPIKey.objects.get(pk=record.pk).can_reveal


def test_staff_with_the_grant_permission_may_give_reveal() -> None:
    client = staff("add_serviceapikey", "view_serviceapikey", "grant_reveal_serviceapikey")
    assert 'name="can_reveal"' in client.get(url("add")).content.decode()
    add(client, can_reveal="on")
    assert ServiceAPIKey.objects.get(name="billing").can_reveal
