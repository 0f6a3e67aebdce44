"""The admin's audit trail: a read-only list with filters and search, shortened hashes, an
export as JSON lines, and no add, change or delete for anyone (superusers included)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from configsync.models import AuditEvent, ServiceAPIKey
from configsync.selectors.audit import AUDIT_EXPORT_FIELDS
from configsync.services.api_keys import api_key_create
from configsync.services.audit import audit_action
from configsync.services.system_config import system_config_set

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:configsync_auditevent_changelist")


@pytest.fixture
def trail(canary: str) -> dict[str, AuditEvent]:
    system_config_set(key="PLAIN", value="hello")
    system_config_set(key="TOKEN", value=canary, is_sensitive=True)
    audit_action(action="mode_switch", details={"from": "settings", "to": "LOCAL_ONLY"})
    return {
        "plain": AuditEvent.objects.get(natural_key="PLAIN"),
        "token": AuditEvent.objects.get(natural_key="TOKEN"),
    }


def test_the_list_shows_who_what_when_and_shortened_hashes(
    admin_client: Client, trail: dict[str, AuditEvent], canary: str
) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    page = response.content.decode()
    stored = trail["token"].value_hashes["secret_value"]
    assert stored not in page and stored[:24] in page
    assert (
        "configsync.systemconfig: TOKEN" in page and "mode_switch" not in page.split("<tbody>")[0]
    )
    when = trail["token"].created_at.strftime("%Y-%m-%d %H:%M:%S")
    assert when in page
    assert canary not in page
    detail = admin_client.get(
        reverse("admin:configsync_auditevent_change", args=[trail["token"].pk])
    )
    assert detail.status_code == 200 and canary not in detail.content.decode()
    assert stored not in detail.content.decode()


def test_filters_and_search(admin_client: Client, trail: dict[str, AuditEvent]) -> None:
    def shown(**query: str) -> set[str]:
        page = admin_client.get(CHANGELIST, query).content.decode()
        return {key for key in ("PLAIN", "TOKEN", "to=") if key in page} | (
            {"mode"} if "Mode switch" in page.split("<tbody>", 1)[-1] else set()
        )

    assert "TOKEN" in shown(q="TOKEN") and "PLAIN" not in shown(q="TOKEN")
    assert shown(action__exact="mode_switch") == {"mode"}
    assert "PLAIN" in shown(via__exact="system")
    assert "PLAIN" not in shown(via__exact="api")
    assert "TOKEN" in shown(model_label__exact="configsync.systemconfig")


def test_nobody_adds_changes_or_deletes_events(
    admin_client: Client, trail: dict[str, AuditEvent]
) -> None:
    event = trail["plain"]
    count = AuditEvent.objects.count()
    assert admin_client.get(reverse("admin:configsync_auditevent_add")).status_code == 403
    change = reverse("admin:configsync_auditevent_change", args=[event.pk])
    assert admin_client.post(change, {"actor": "forged"}).status_code == 403
    delete = reverse("admin:configsync_auditevent_delete", args=[event.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    bulk = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.get(pk=event.pk).actor == "system"
    assert AuditEvent.objects.count() == count


def test_export_selected_as_json_lines(
    admin_client: Client, trail: dict[str, AuditEvent], canary: str
) -> None:
    chosen = [trail["plain"].pk, trail["token"].pk]
    response = admin_client.post(CHANGELIST, {"action": "export_jsonl", "_selected_action": chosen})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    text = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    rows = [json.loads(line) for line in text.splitlines()]
    assert [row["id"] for row in rows] == chosen  # oldest first
    assert all(tuple(row) == AUDIT_EXPORT_FIELDS for row in rows)
    assert canary not in text


def test_a_user_without_the_view_permission_sees_no_trail(trail: Any) -> None:
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user(username="staff", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(CHANGELIST).status_code == 403


def test_the_admin_revoke_leaves_a_log_entry_and_an_audit_event(admin_client: Client) -> None:
    record, _ = api_key_create(name="old")
    response = admin_client.post(
        reverse("admin:configsync_serviceapikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [record.pk]},
    )
    assert response.status_code == 302
    assert ServiceAPIKey.objects.get(pk=record.pk).revoked
    assert LogEntry.objects.filter(object_id=str(record.pk), change_message="Revoked.").exists()
    event = AuditEvent.objects.get(action="revoke_key")
    assert (event.actor, event.via) == ("user:admin", "admin")
    assert event.details["prefix"] == record.prefix and event.details["name"] == "old"


def test_was_it_this_value_answers_and_is_itself_audited(
    admin_client: Client, trail: dict[str, AuditEvent], canary: str
) -> None:
    event = trail["token"]
    detail = admin_client.get(reverse("admin:configsync_auditevent_change", args=[event.pk]))
    url = reverse("admin:configsync_auditevent_check_value", args=[event.pk])
    assert url in detail.content.decode()
    form = admin_client.get(url)
    assert form.status_code == 200 and 'type="password"' in form.content.decode()
    yes = admin_client.post(url, {"field": "secret_value", "value": canary})
    no = admin_client.post(url, {"field": "secret_value", "value": "sk-CANARY-wrong-0000"})
    assert "yes, it was this value" in yes.content.decode()
    assert "no, it was another value" in no.content.decode()
    for response in (form, yes, no):
        assert canary not in response.content.decode()
    checks = list(AuditEvent.objects.filter(action="check_value").order_by("id"))
    assert [(c.actor, c.via, c.details["answer"]) for c in checks] == [
        ("user:admin", "admin", "yes"),
        ("user:admin", "admin", "no"),
    ]
    assert checks[0].details["event"] == event.pk and checks[0].natural_key == "TOKEN"
    bad_field = admin_client.post(url, {"field": "value", "value": canary})
    assert bad_field.status_code == 200 and bad_field.context["answer"] == ""
    assert "Select a valid choice" in bad_field.content.decode()
    assert AuditEvent.objects.filter(action="check_value").count() == 2


def test_was_it_this_value_needs_the_view_permission(trail: dict[str, AuditEvent]) -> None:
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user(username="staff", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    url = reverse("admin:configsync_auditevent_check_value", args=[trail["token"].pk])
    assert client.post(url, {"field": "secret_value", "value": "x"}).status_code == 403
    assert not AuditEvent.objects.filter(action="check_value").exists()


def test_deleting_an_api_key_in_the_admin_is_audited(admin_client: Client) -> None:
    record, _ = api_key_create(name="gone")
    response = admin_client.post(
        reverse("admin:configsync_serviceapikey_delete", args=[record.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not ServiceAPIKey.objects.filter(pk=record.pk).exists()
    event = AuditEvent.objects.get(action="delete_key")
    assert (event.actor, event.via, event.details["prefix"]) == (
        "user:admin",
        "admin",
        record.prefix,
    )
    other, _ = api_key_create(name="bulk")
    admin_client.post(
        reverse("admin:configsync_serviceapikey_changelist"),
        {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"},
    )
    assert not ServiceAPIKey.objects.filter(pk=other.pk).exists()
    assert AuditEvent.objects.filter(action="delete_key").count() == 2
