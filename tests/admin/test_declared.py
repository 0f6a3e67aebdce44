"""The admin and declared settings: typed widgets, help text, "declared, not set", reset to default,
and the secret rule on the add page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from configsync import get_system_config
from configsync.lookup import lookup_cache
from configsync.models import SystemConfig
from configsync.services.system_config import system_config_set
from tests.support.admin import setting_form

pytestmark = pytest.mark.django_db

SCHEMA = {
    "SITE_NAME": {"type": "str", "default": "Example", "help_text": "Shown in page titles."},
    "MAX_ITEMS": {"type": "int", "default": 20, "help_text": "Items per page."},
    "RATIO": {"type": "float", "default": 0.5},
    "FEATURE_X": {"type": "bool", "default": False, "help_text": "Turns X on."},
    "HOME": {"type": "url", "default": "https://example.com/"},
    "LAYOUT": {"type": "json", "default": {"columns": 2}},
    "STRIPE_KEY": {"type": "str", "default": "sk-CANARY-declared-default", "sensitive": True},
}


@pytest.fixture(autouse=True)
def schema(settings: Any) -> None:
    settings.CONFIGSYNC_SCHEMA = SCHEMA
    lookup_cache.invalidate_local()


def url(view: str, *args: Any) -> str:
    return reverse(f"admin:configsync_systemconfig_{view}", args=args)


def body(response: Any) -> str:
    return response.content.decode()


def value_input(html: str) -> str:
    """The rendered tag of the form's ``value`` field."""
    match = re.search(r'<(input|textarea|select)[^>]*name="value"[^>]*>', html)
    assert match, "no value field"
    return match.group(0)


@pytest.mark.parametrize(
    ("key", "value", "value_type", "expected"),
    [
        ("FEATURE_X", True, "bool", 'type="checkbox"'),
        ("MAX_ITEMS", 30, "int", 'type="number"'),
        ("RATIO", 0.25, "float", 'type="number"'),
        ("HOME", "https://example.org/", "url", 'type="url"'),
        ("LAYOUT", {"columns": 3}, "json", "configsync-json"),
        ("UNDECLARED", "text", "str", "<textarea"),
    ],
)
def test_the_change_form_uses_the_type_widget(
    admin_client: Client, key: str, value: Any, value_type: str, expected: str
) -> None:
    record = system_config_set(key=key, value=value, value_type=value_type)
    tag = value_input(body(admin_client.get(url("change", record.pk))))
    assert expected in tag


def test_bool_checkbox_reflects_and_saves_the_value(admin_client: Client) -> None:
    record = system_config_set(key="FEATURE_X", value=True, value_type="bool")
    page = body(admin_client.get(url("change", record.pk)))
    assert "checked" in value_input(page)
    assert "Turns X on." in page
    # Unticked: the browser posts no "value"; the checkbox reads that as false.
    response = admin_client.post(url("change", record.pk), setting_form(record, value=None))
    assert response.status_code == 302
    assert get_system_config("FEATURE_X") is False
    record.refresh_from_db()
    assert "checked" not in value_input(body(admin_client.get(url("change", record.pk))))


def test_json_field_is_validated(admin_client: Client) -> None:
    record = system_config_set(key="LAYOUT", value={"columns": 3}, value_type="json")
    response = admin_client.post(url("change", record.pk), setting_form(record, value="{nope"))
    assert response.status_code == 200 and "Enter valid JSON." in body(response)
    response = admin_client.post(
        url("change", record.pk), setting_form(record, value='{"columns": 4}')
    )
    assert response.status_code == 302
    assert get_system_config("LAYOUT") == {"columns": 4}


def test_changelist_lists_declared_settings_without_a_value(
    admin_client: Client, canary: str
) -> None:
    system_config_set(key="MAX_ITEMS", value=30, value_type="int")
    page = body(admin_client.get(url("changelist")))
    section = page[page.index('id="declared-unset"') :]
    assert 'data-key="SITE_NAME"' in section and "Example" in section
    assert 'data-key="MAX_ITEMS"' not in section  # stored: in the ordinary list
    assert f'href="{url("add")}?key=SITE_NAME"' in section
    assert "sk-CANARY" not in page  # a sensitive default is never shown


def test_add_page_of_a_declared_key_starts_from_the_declaration_and_blank_stores_the_default(
    admin_client: Client,
) -> None:
    page = body(admin_client.get(url("add"), {"key": "MAX_ITEMS"}))
    assert '<option value="int" selected>' in page
    assert "Items per page." in page and "Default: 20." in page
    response = admin_client.post(
        url("add"), {"key": "MAX_ITEMS", "value_type": "int", "value": "", "category": "general"}
    )
    assert response.status_code == 302
    assert SystemConfig.objects.get(key="MAX_ITEMS").value == "20"


def test_a_declared_sensitive_default_is_stored_encrypted_and_never_shown(
    admin_client: Client,
) -> None:
    page = body(admin_client.get(url("add"), {"key": "STRIPE_KEY"}))
    assert "sk-CANARY" not in page
    response = admin_client.post(
        url("add"), {"key": "STRIPE_KEY", "value_type": "str", "value": "", "category": "general"}
    )
    assert response.status_code == 302
    record = SystemConfig.objects.get(key="STRIPE_KEY")
    assert record.is_sensitive and record.value == ""


@pytest.mark.parametrize(
    ("key", "value", "posted", "sensitive", "rule"),
    [
        ("PAYMENT_SECRET", "sk-CANARY-one", "", True, "the name matches"),
        ("DB2_URL", "postgres://admin:sk-CANARY-two@db/app", "", True, "URL carrying"),
        ("SITE_TITLE", "Hello", "", False, "no secret rule"),
        ("PAYMENT_SECRET", "not secret", "false", False, "as asked"),
        ("SITE_TITLE", "sk-CANARY-three", "true", True, "as asked"),
    ],
)
def test_the_add_page_applies_the_secret_rule_unless_told(
    admin_client: Client, key: str, value: str, posted: str, sensitive: bool, rule: str
) -> None:
    data = {"key": key, "value_type": "str", "value": value, "category": "x"}
    if posted:
        data["is_sensitive"] = posted
    response = admin_client.post(url("add"), data, follow=True)
    assert response.status_code == 200
    record = SystemConfig.objects.get(key=key)
    assert record.is_sensitive is sensitive
    assert rule in body(response)
    if sensitive:
        assert record.value == "" and value not in body(response)


def test_reset_to_default_asks_then_deletes_the_stored_value(admin_client: Client) -> None:
    record = system_config_set(key="MAX_ITEMS", value=99, value_type="int")
    assert get_system_config("MAX_ITEMS") == 99
    change = body(admin_client.get(url("change", record.pk)))
    assert f'href="{url("reset", record.pk)}"' in change and "Reset to default" in change

    confirm = admin_client.get(url("reset", record.pk))
    assert confirm.status_code == 200 and "Yes, reset to default" in body(confirm)
    assert SystemConfig.objects.filter(key="MAX_ITEMS").exists()  # a GET changes nothing

    response = admin_client.post(url("reset", record.pk))
    assert response.status_code == 302
    assert not SystemConfig.objects.filter(key="MAX_ITEMS").exists()
    assert get_system_config("MAX_ITEMS") == 20


def test_no_reset_for_an_undeclared_setting(admin_client: Client) -> None:
    record = system_config_set(key="UNDECLARED", value="x")
    assert "Reset to default" not in body(admin_client.get(url("change", record.pk)))
    assert admin_client.post(url("reset", record.pk)).status_code == 403
    assert SystemConfig.objects.filter(key="UNDECLARED").exists()
