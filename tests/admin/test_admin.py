"""The admin, driven through Django's test client as a superuser: secrets never reach the HTML."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import Client
from django.urls import reverse

from configsync.models import SystemConfig
from configsync.services.system_config import system_config_set
from providers.models import AIProviderConfig
from providers.services import ai_provider_set
from tests.support.admin import provider_form, setting_form

pytestmark = pytest.mark.django_db


def url(model: str, view: str, *args: Any) -> str:
    return reverse(f"admin:{model}_{view}", args=args)


SETTING = "configsync_systemconfig"
PROVIDER = "providers_aiproviderconfig"


def body(response: Any) -> str:
    return response.content.decode()


def test_no_admin_page_of_a_sensitive_setting_shows_the_secret(
    admin_client: Client, canary: str
) -> None:
    record = system_config_set(key="DB_PASSWORD", value=canary, is_sensitive=True)
    token = str(SystemConfig.objects.get(pk=record.pk).__dict__["secret_value"])
    # An edit that is logged, so the history page has an entry to show.
    response = admin_client.post(
        url(SETTING, "change", record.pk), setting_form(record, description="db")
    )
    assert response.status_code == 302

    pages = {
        view: admin_client.get(url(SETTING, view, *([] if view == "changelist" else [record.pk])))
        for view in ("changelist", "change", "history", "delete")
    }
    pages["search"] = admin_client.get(url(SETTING, "changelist"), {"q": "DB_PASSWORD"})
    for view, response in pages.items():
        assert response.status_code == 200, view
        assert canary not in body(response), view
        assert token not in body(response), view
    assert "DB_PASSWORD" in body(pages["changelist"])
    assert ">set<" in body(pages["change"])
    assert 'name="value" id="id_value" value=""' in body(pages["change"])
    for entry in LogEntry.objects.all():
        assert canary not in entry.change_message and canary not in entry.object_repr


def test_no_admin_page_of_a_provider_shows_its_key(admin_client: Client, canary: str) -> None:
    record = ai_provider_set(name="openai-main", kind="openai", api_key=canary)
    for view in ("changelist", "change", "history", "delete"):
        args = [] if view == "changelist" else [record.pk]
        response = admin_client.get(url(PROVIDER, view, *args))
        assert response.status_code == 200, view
        assert canary not in body(response), view
    change = body(admin_client.get(url(PROVIDER, "change", record.pk)))
    assert 'name="api_key_clear"' in change and ">set<" in change


def test_blank_keeps_the_secret_a_new_value_replaces_it_clear_removes_it(
    admin_client: Client, canary: str
) -> None:
    record = system_config_set(key="TOKEN", value=canary, is_sensitive=True)
    response = admin_client.post(
        url(SETTING, "change", record.pk), setting_form(record, category="security")
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.category == "security" and record.typed_value() == canary

    response = admin_client.post(
        url(SETTING, "change", record.pk), setting_form(record, value="sk-CANARY-rotated")
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.typed_value() == "sk-CANARY-rotated"

    response = admin_client.post(
        url(SETTING, "change", record.pk), setting_form(record, value_clear="on")
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert not record.has_value


def test_a_stale_form_is_refused_and_changes_nothing(admin_client: Client) -> None:
    record = system_config_set(key="MODE", value="one")
    stale = setting_form(record, value="from the stale form")
    system_config_set(key="MODE", value="two")  # someone else, after the form was loaded

    response = admin_client.post(url(SETTING, "change", record.pk), stale)
    assert response.status_code == 200
    assert "changed (by someone else" in body(response)
    assert SystemConfig.objects.get(key="MODE").value == "two"


@pytest.mark.parametrize(
    ("value_type", "value", "message"),
    [
        ("int", "forty-two", "Enter a whole number."),
        ("url", "not a url", "Enter a valid URL"),
        ("json", "{broken", "Enter valid JSON."),
        ("yaml", "x: 1", "Select a valid choice."),
    ],
)
def test_an_invalid_value_is_a_form_error_and_saves_nothing(
    admin_client: Client, value_type: str, value: str, message: str
) -> None:
    data = {"key": "NEW_SETTING", "value_type": value_type, "value": value, "category": "x"}
    response = admin_client.post(url(SETTING, "add"), data)
    assert response.status_code == 200
    assert message in body(response)
    assert not SystemConfig.objects.exists()


def test_a_secret_typed_into_a_failing_add_form_is_not_echoed(
    admin_client: Client, canary: str
) -> None:
    data = {"key": "bad key", "value_type": "str", "value": canary, "is_sensitive": "on"}
    response = admin_client.post(url(SETTING, "add"), data)
    assert response.status_code == 200
    assert "Use letters, digits" in body(response)
    assert canary not in body(response)
    assert not SystemConfig.objects.exists()


def test_adding_a_sensitive_setting_encrypts_it(admin_client: Client, canary: str) -> None:
    data = {
        "key": "SMTP_PASSWORD",
        "value_type": "str",
        "value": canary,
        "is_sensitive": "on",
        "category": "mail",
        "description": "",
    }
    response = admin_client.post(url(SETTING, "add"), data)
    assert response.status_code == 302
    with connection.cursor() as cursor:
        cursor.execute("SELECT value, secret_value FROM configsync_systemconfig")
        value, secret = cursor.fetchone()
    assert value == "" and secret.startswith("enc1:") and canary not in secret
    assert SystemConfig.objects.get(key="SMTP_PASSWORD").typed_value() == canary
    assert canary not in LogEntry.objects.get().change_message


def test_provider_kind_rules_are_form_errors(admin_client: Client, canary: str) -> None:
    data = {
        "name": "azure-main",
        "kind": "azure_openai",
        "api_key": canary,
        "endpoint": "",
        "enabled": "on",
    }
    response = admin_client.post(url(PROVIDER, "add"), data)
    assert response.status_code == 200
    assert "Required for Azure OpenAI." in body(response)
    assert canary not in body(response)
    assert not AIProviderConfig.objects.exists()

    data.update(
        endpoint="https://example.openai.azure.com", api_version="2024-10-21", deployment="gpt"
    )
    response = admin_client.post(url(PROVIDER, "add"), data)
    assert response.status_code == 302
    assert AIProviderConfig.objects.get(name="azure-main").api_key == canary


def test_provider_admin_keeps_the_key_and_moves_the_default(
    admin_client: Client, canary: str
) -> None:
    first = ai_provider_set(name="first", kind="openai", api_key=canary, is_default=True)
    second = ai_provider_set(name="second", kind="anthropic", api_key="sk-CANARY-second")
    response = admin_client.post(
        url(PROVIDER, "change", second.pk), provider_form(second, is_default="on")
    )
    assert response.status_code == 302, body(response)
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_default and not first.is_default
    assert second.api_key == "sk-CANARY-second"

    response = admin_client.post(
        url(PROVIDER, "change", first.pk), provider_form(first, api_key_clear="on")
    )
    assert response.status_code == 200
    assert "Required for OpenAI." in body(response)
    assert AIProviderConfig.objects.get(name="first").api_key == canary


def test_list_filters_and_delete_go_through_the_services(admin_client: Client) -> None:
    system_config_set(key="A", value="1", category="database")
    system_config_set(key="B", value="sk-CANARY-b", category="security", is_sensitive=True)
    listing = body(admin_client.get(url(SETTING, "changelist")))
    for filter_title in ("By category", "By sensitive", "By type"):
        assert filter_title in listing
    filtered = body(admin_client.get(url(SETTING, "changelist"), {"is_sensitive__exact": "1"}))
    assert ">B<" in filtered and ">A<" not in filtered
    assert "By provider kind" in body(admin_client.get(url(PROVIDER, "changelist")))

    record = SystemConfig.objects.get(key="B")
    response = admin_client.post(url(SETTING, "delete", record.pk), {"post": "yes"})
    assert response.status_code == 302
    assert list(SystemConfig.objects.values_list("key", flat=True)) == ["A"]


def test_making_a_setting_sensitive_in_the_admin_encrypts_the_kept_value(
    admin_client: Client, canary: str
) -> None:
    record = system_config_set(key="WEBHOOK_TOKEN", value=canary)
    data = setting_form(record, is_sensitive="on", value=None)
    response = admin_client.post(url(SETTING, "change", record.pk), data)
    assert response.status_code == 302, body(response)
    with connection.cursor() as cursor:
        cursor.execute("SELECT value, secret_value FROM configsync_systemconfig")
        value, secret = cursor.fetchone()
    assert value == "" and canary not in secret
    assert SystemConfig.objects.get(key="WEBHOOK_TOKEN").typed_value() == canary
    assert canary not in body(admin_client.get(url(SETTING, "change", record.pk)))


def test_changing_the_type_revalidates_a_kept_secret(admin_client: Client) -> None:
    record = system_config_set(key="PIN", value="1234", value_type="int", is_sensitive=True)
    response = admin_client.post(
        url(SETTING, "change", record.pk), setting_form(record, value_type="bool")
    )
    assert response.status_code == 200
    assert "Enter true or false." in body(response)
    assert "1234" not in body(response)
    assert SystemConfig.objects.get(key="PIN").value_type == "int"


def test_bulk_delete_confirmation_shows_no_secret(admin_client: Client, canary: str) -> None:
    record = system_config_set(key="BULK", value=canary, is_sensitive=True)
    data = {"action": "delete_selected", "_selected_action": [record.pk]}
    response = admin_client.post(url(SETTING, "changelist"), data)
    assert response.status_code == 200 and "Are you sure" in body(response)
    assert canary not in body(response)
    data["post"] = "yes"
    assert admin_client.post(url(SETTING, "changelist"), data).status_code == 302
    assert not SystemConfig.objects.exists()


def test_pages_work_on_a_node_that_cannot_read_the_secret(
    admin_client: Client, canary: str, settings: Any
) -> None:
    from configsync.crypto.keyring import generate_key, reset_keyring

    keys = settings.CONFIGSYNC_ENCRYPTION_KEYS
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [generate_key()]
    record = system_config_set(key="FOREIGN", value=canary, is_sensitive=True)
    settings.CONFIGSYNC_ENCRYPTION_KEYS = keys
    reset_keyring()
    for view in ("changelist", "change"):
        args = [] if view == "changelist" else [record.pk]
        response = admin_client.get(url(SETTING, view, *args))
        assert response.status_code == 200 and canary not in body(response)
    response = admin_client.post(
        url(SETTING, "change", record.pk), setting_form(record, description="still editable")
    )
    assert response.status_code == 302
    assert SystemConfig.objects.get(key="FOREIGN").description == "still editable"


def test_provider_single_and_bulk_delete(admin_client: Client) -> None:
    gone = ai_provider_set(name="gone", kind="ollama")
    bulk = ai_provider_set(name="bulk", kind="ollama")
    response = admin_client.post(url(PROVIDER, "delete", gone.pk), {"post": "yes"})
    assert response.status_code == 302
    data = {"action": "delete_selected", "_selected_action": [bulk.pk], "post": "yes"}
    assert admin_client.post(url(PROVIDER, "changelist"), data).status_code == 302
    assert not AIProviderConfig.objects.exists()
    name_field = body(admin_client.get(url(PROVIDER, "add")))
    assert 'name="name"' in name_field  # editable while adding, read-only once it exists


def test_a_view_only_staff_user_sees_whether_a_key_is_set_never_the_key(canary: str) -> None:
    """With the view permission only, Django renders every field read-only from the model's
    attribute, which decrypts: the admin shows the key's status in the secret's place."""
    from django.contrib.auth.models import Permission, User

    provider = ai_provider_set(name="viewed", kind="openai", api_key=canary)
    setting = system_config_set(key="VIEWED_SECRET", value=canary, is_sensitive=True)
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_aiproviderconfig", "view_systemconfig"])
    )
    client = Client()
    client.force_login(viewer)

    provider_page = client.get(url(PROVIDER, "change", provider.pk))
    setting_page = client.get(url(SETTING, "change", setting.pk))

    assert provider_page.status_code == setting_page.status_code == 200
    assert canary not in body(provider_page)
    assert canary not in body(setting_page)
    assert 'readonly">set</div>' in body(provider_page)
