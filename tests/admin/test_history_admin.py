"""The admin's "Versions" page and "Roll back to this" (RecordVersionsAdminMixin) on settings,
providers, users and groups: never a secret in the HTML, confirmation before the POST, CSRF,
permissions, and bad input changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from configsync.models import AuditEvent, RecordVersion, SystemConfig
from configsync.services.system_config import system_config_set
from providers.models import AIProviderConfig
from providers.services import ai_provider_set

pytestmark = pytest.mark.django_db

SETTING = "configsync_systemconfig"


def versions(model: str, key: str) -> str:
    return reverse(f"admin:{model}_versions", kwargs={"key": quote(key)})


def rollback(model: str, key: str, number: int) -> str:
    return reverse(f"admin:{model}_rollback", kwargs={"key": quote(key), "number": number})


def text(response: Any) -> str:
    return str(response.content.decode())


def test_the_change_page_has_a_versions_button(admin_client: Client) -> None:
    record = system_config_set(key="SITE", value="one")
    page = admin_client.get(reverse(f"admin:{SETTING}_change", args=[record.pk]))
    assert page.status_code == 200
    assert f'href="{versions(SETTING, "SITE")}"' in text(page)
    assert ">Versions<" in text(page)
    # Django's own History (LogEntry) object tool is still there.
    assert reverse(f"admin:{SETTING}_history", args=[record.pk]) in text(page)


def test_versions_page_shows_a_plain_diff_and_rollback_buttons(admin_client: Client) -> None:
    system_config_set(key="SITE", value="one")
    system_config_set(key="SITE", value="two")
    page = admin_client.get(versions(SETTING, "SITE"))
    assert page.status_code == 200
    body = text(page)
    assert "<del>one</del> &rarr; <ins>two</ins>" in body
    assert rollback(SETTING, "SITE", 1) in body
    assert rollback(SETTING, "SITE", 2) not in body  # the current version


def test_a_secret_is_never_on_the_versions_or_confirmation_pages(
    admin_client: Client, canary: str
) -> None:
    system_config_set(key="TOKEN", value=canary, is_sensitive=True)
    system_config_set(key="TOKEN", value=canary + "-2", is_sensitive=True)
    tokens = [v.data["secret_value"] for v in RecordVersion.objects.filter(natural_key="TOKEN")]
    for url in (versions(SETTING, "TOKEN"), rollback(SETTING, "TOKEN", 1)):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert canary not in text(page)
        assert all(token not in text(page) for token in tokens)
        assert "********" in text(page)
    assert "value changed" in text(admin_client.get(versions(SETTING, "TOKEN")))


def test_rollback_asks_first_then_posts_and_says_so(admin_client: Client) -> None:
    system_config_set(key="LEVEL", value="good")
    system_config_set(key="LEVEL", value="bad")
    confirm = admin_client.get(rollback(SETTING, "LEVEL", 1))
    assert confirm.status_code == 200
    assert "Yes, roll back to version 1" in text(confirm) and "csrfmiddlewaretoken" in text(confirm)
    assert SystemConfig.objects.get(key="LEVEL").value == "bad"  # a GET changes nothing
    done = admin_client.post(rollback(SETTING, "LEVEL", 1), follow=True)
    assert done.status_code == 200
    assert "was rolled back to version 1" in text(done)
    assert SystemConfig.objects.get(key="LEVEL").value == "good"
    event = AuditEvent.objects.filter(natural_key="LEVEL").order_by("-id").first()
    assert event is not None and event.via == "rollback" and event.actor == "user:admin"
    assert event.details["rolled_back_to"] == 1


def test_rollback_needs_the_csrf_token(admin_user: User) -> None:
    system_config_set(key="LEVEL", value="good")
    system_config_set(key="LEVEL", value="bad")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(rollback(SETTING, "LEVEL", 1)).status_code == 403
    assert SystemConfig.objects.get(key="LEVEL").value == "bad"


def test_rollback_to_a_version_that_does_not_exist_changes_nothing(admin_client: Client) -> None:
    system_config_set(key="LEVEL", value="a")
    before = (RecordVersion.objects.count(), AuditEvent.objects.count())
    page = admin_client.post(rollback(SETTING, "LEVEL", 9), follow=True)
    assert page.status_code == 200 and "has no kept version 9" in text(page)
    assert (RecordVersion.objects.count(), AuditEvent.objects.count()) == before


def test_a_deleted_records_versions_stay_reachable_and_restore_it(admin_client: Client) -> None:
    record = system_config_set(key="GONE", value="here")
    admin_client.post(reverse(f"admin:{SETTING}_delete", args=[record.pk]), {"post": "yes"})
    assert not SystemConfig.objects.filter(key="GONE").exists()
    page = admin_client.get(versions(SETTING, "GONE"))
    assert page.status_code == 200 and "Deleted." in text(page)
    admin_client.post(rollback(SETTING, "GONE", 1))
    assert SystemConfig.objects.get(key="GONE").value == "here"


def test_view_permission_sees_versions_but_cannot_roll_back() -> None:
    system_config_set(key="LEVEL", value="good")
    system_config_set(key="LEVEL", value="bad")
    viewer = User.objects.create_user("viewer", password="unused-in-tests", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_systemconfig"))
    client = Client()
    client.force_login(viewer)
    page = client.get(versions(SETTING, "LEVEL"))
    assert page.status_code == 200 and "Roll back to this" not in text(page)
    assert client.post(rollback(SETTING, "LEVEL", 1)).status_code == 403
    assert SystemConfig.objects.get(key="LEVEL").value == "bad"


def test_providers_users_and_groups_have_versions(admin_client: Client, canary: str) -> None:
    ai_provider_set(name="main", kind="openai", api_key=canary, default_model="gpt-4o-mini")
    ai_provider_set(name="main", default_model="gpt-4o")
    provider = AIProviderConfig.objects.get(name="main")
    change = admin_client.get(
        reverse("admin:providers_aiproviderconfig_change", args=[provider.pk])
    )
    assert versions("providers_aiproviderconfig", "main") in text(change)
    page = admin_client.get(versions("providers_aiproviderconfig", "main"))
    assert page.status_code == 200 and canary not in text(page)
    admin_client.post(rollback("providers_aiproviderconfig", "main", 1))
    assert AIProviderConfig.objects.get(name="main").default_model == "gpt-4o-mini"

    alice = User.objects.create_user("alice", password="CANARY-user-password")
    user_page = admin_client.get(versions("auth_user", "alice"))
    assert user_page.status_code == 200
    assert "CANARY-user-password" not in text(user_page) and alice.password not in text(user_page)
    assert versions("auth_user", "alice") in text(
        admin_client.get(reverse("admin:auth_user_change", args=[alice.pk]))
    )
    group = Group.objects.create(name="ops")
    assert versions("auth_group", "ops") in text(
        admin_client.get(reverse("admin:auth_group_change", args=[group.pk]))
    )
