"""``GET .../{key}/history/`` and ``POST .../{key}/rollback/`` on system settings and AI
providers: scopes, masking (never a secret, whatever the scope), bad input writes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from configsync.models import AuditEvent, RecordVersion, SystemConfig
from configsync.services.system_config import system_config_delete, system_config_set
from providers.models import AIProviderConfig
from providers.services import ai_provider_set

pytestmark = pytest.mark.django_db

SETTINGS = "/api/v1/configs/system"
PROVIDERS = "/api/v1/configs/ai-providers"


def _two_versions(canary: str) -> None:
    system_config_set(key="TOKEN", value=canary, is_sensitive=True)
    system_config_set(key="TOKEN", value="sk-CANARY-second", is_sensitive=True)


@pytest.mark.parametrize("role", ["read", "write", "reveal", "admin"])
def test_history_masks_secrets_for_every_role(
    role: str, client_for: Callable[[str], APIClient], canary: str
) -> None:
    _two_versions(canary)
    client = client_for(role)
    for reveal in ("", "?reveal=true"):
        response = client.get(f"{SETTINGS}/TOKEN/history/{reveal}")
        assert response.status_code == 200, response.content
        text = response.content.decode()
        assert canary not in text and "sk-CANARY-second" not in text
        versions = response.json()["versions"]
        assert [v["version"] for v in versions] == [2, 1]
        assert versions[0]["values"]["secret_value"] == "********"
        change = {c["field"]: c for c in versions[0]["changes"]}["secret_value"]
        assert change["status"] == "changed" and change["before"] == "********"
    assert not AuditEvent.objects.filter(action="reveal").exists()


def test_history_needs_the_read_scope(client_for: Callable[[str], APIClient]) -> None:
    system_config_set(key="PLAIN", value="x")
    assert client_for("anonymous").get(f"{SETTINGS}/PLAIN/history/").status_code in (401, 403)


def test_history_of_an_unknown_key_is_404(client_for: Callable[[str], APIClient]) -> None:
    assert client_for("read").get(f"{SETTINGS}/NOPE/history/").status_code == 404


def test_rollback_needs_the_write_scope_and_writes_a_new_version(
    client_for: Callable[[str], APIClient],
) -> None:
    system_config_set(key="LEVEL", value="good")
    system_config_set(key="LEVEL", value="bad")
    refused = client_for("read").post(f"{SETTINGS}/LEVEL/rollback/", {"version": 1}, format="json")
    assert refused.status_code == 403
    assert SystemConfig.objects.get(key="LEVEL").value == "bad"
    response = client_for("write").post(
        f"{SETTINGS}/LEVEL/rollback/", {"version": 1}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["rolled_back_to"] == 1 and response.json()["version"] == 3
    assert SystemConfig.objects.get(key="LEVEL").value == "good"
    event = AuditEvent.objects.filter(natural_key="LEVEL").order_by("-id").first()
    assert event is not None and event.via == "rollback" and event.actor.startswith("api-key:")
    assert event.details["rolled_back_to"] == 1


@pytest.mark.parametrize(
    "body",
    [{"version": 9}, {"version": 0}, {"version": "x"}, {}],
    ids=["missing", "zero", "text", "empty"],
)
def test_rollback_to_a_bad_version_is_400_and_writes_nothing(
    body: dict[str, object], client_for: Callable[[str], APIClient]
) -> None:
    system_config_set(key="LEVEL", value="a")
    client = client_for("write")  # creating the key is audited: before counting
    before = (RecordVersion.objects.count(), AuditEvent.objects.count())
    response = client.post(f"{SETTINGS}/LEVEL/rollback/", body, format="json")
    assert response.status_code == 400
    assert "version" in response.json()
    assert (RecordVersion.objects.count(), AuditEvent.objects.count()) == before


def test_rollback_to_a_plain_version_of_a_secret_needs_reveal(
    client_for: Callable[[str], APIClient], canary: str
) -> None:
    system_config_set(key="WAS_PLAIN", value=canary)
    system_config_set(key="WAS_PLAIN", value="sk-CANARY-now", is_sensitive=True, allow_reveal=True)
    response = client_for("write").post(
        f"{SETTINGS}/WAS_PLAIN/rollback/", {"version": 1}, format="json"
    )
    assert response.status_code == 403
    assert canary not in response.content.decode()
    assert SystemConfig.objects.get(key="WAS_PLAIN").is_sensitive
    allowed = client_for("reveal").post(
        f"{SETTINGS}/WAS_PLAIN/rollback/", {"version": 1}, format="json"
    )
    assert allowed.status_code == 403  # the reveal key lacks the write scope
    admin = client_for("admin").post(
        f"{SETTINGS}/WAS_PLAIN/rollback/", {"version": 1}, format="json"
    )
    assert admin.status_code == 200
    assert SystemConfig.objects.get(key="WAS_PLAIN").value == canary


def test_provider_history_and_rollback(client_for: Callable[[str], APIClient], canary: str) -> None:
    ai_provider_set(name="main", kind="openai", api_key=canary, default_model="gpt-4o-mini")
    ai_provider_set(name="main", default_model="gpt-4o")
    history = client_for("reveal").get(f"{PROVIDERS}/main/history/?reveal=true")
    assert history.status_code == 200
    assert canary not in history.content.decode()
    assert history.json()["versions"][0]["changes"] == [
        {
            "field": "default_model",
            "sensitive": False,
            "before": "gpt-4o-mini",
            "after": "gpt-4o",
            "status": "changed",
        }
    ]
    response = client_for("write").post(
        f"{PROVIDERS}/main/rollback/", {"version": 1}, format="json"
    )
    assert response.status_code == 200, response.content
    assert AIProviderConfig.objects.get(name="main").default_model == "gpt-4o-mini"


def test_the_schema_describes_history_and_rollback(client_for: Callable[[str], APIClient]) -> None:
    schema = client_for("read").get("/api/v1/schema/?format=json").json()
    for base in ("/api/v1/configs/system/{key}", "/api/v1/configs/ai-providers/{name}"):
        history = schema["paths"][f"{base}/history/"]["get"]
        assert "200" in history["responses"] and "404" in history["responses"]
        rollback = schema["paths"][f"{base}/rollback/"]["post"]
        assert {"200", "400", "403"} <= set(rollback["responses"])
        assert "requestBody" in rollback


def test_a_record_older_than_the_history_has_an_empty_one(
    client_for: Callable[[str], APIClient],
) -> None:
    system_config_set(key="OLD", value="from before the history")
    RecordVersion.objects.filter(natural_key="OLD").delete()
    client = client_for("write")
    response = client.get(f"{SETTINGS}/OLD/history/")
    assert response.status_code == 200 and response.json()["versions"] == []
    refused = client.post(f"{SETTINGS}/OLD/rollback/", {"version": 1}, format="json")
    assert refused.status_code == 400 and "no kept version 1" in str(refused.json())


def test_rollback_of_a_deleted_secret_to_its_plain_version_needs_reveal(
    client_for: Callable[[str], APIClient], canary: str
) -> None:
    """The history masks version 1 (a later kept version is sensitive); with the record deleted
    there is no current flag to look at, yet the rollback would still show that value."""
    system_config_set(key="WAS_PLAIN", value=canary)
    system_config_set(key="WAS_PLAIN", value="sk-CANARY-now", is_sensitive=True, allow_reveal=True)
    system_config_delete(key="WAS_PLAIN")
    history = client_for("read").get(f"{SETTINGS}/WAS_PLAIN/history/")
    assert history.status_code == 200 and canary not in history.content.decode()
    response = client_for("write").post(
        f"{SETTINGS}/WAS_PLAIN/rollback/", {"version": 1}, format="json"
    )
    assert response.status_code == 403
    assert canary not in response.content.decode()
    assert not SystemConfig.objects.filter(key="WAS_PLAIN").exists()
    assert not AuditEvent.objects.filter(action="reveal").exists()
    assert (
        client_for("admin")
        .post(f"{SETTINGS}/WAS_PLAIN/rollback/", {"version": 1}, format="json")
        .status_code
        == 200
    )
    assert SystemConfig.objects.get(key="WAS_PLAIN").value == canary
    reveal = AuditEvent.objects.get(action="reveal", natural_key="WAS_PLAIN")
    change = AuditEvent.objects.filter(
        natural_key="WAS_PLAIN", via="rollback", action="create"
    ).last()
    assert change is not None and (reveal.via, reveal.actor) == ("rollback", change.actor)


def test_rollback_to_a_plain_version_the_history_masks_needs_reveal(
    client_for: Callable[[str], APIClient], canary: str
) -> None:
    """Sensitive, then made plain (by someone with the reveal right), then changed: the history
    masks every kept value, so rolling back to the first plain one shows a masked value."""
    system_config_set(key="ONCE_SECRET", value="sk-CANARY-first", is_sensitive=True)
    system_config_set(key="ONCE_SECRET", value=canary, is_sensitive=False, allow_reveal=True)
    system_config_set(key="ONCE_SECRET", value="now-plain")
    history = client_for("read").get(f"{SETTINGS}/ONCE_SECRET/history/")
    assert canary not in history.content.decode()
    response = client_for("write").post(
        f"{SETTINGS}/ONCE_SECRET/rollback/", {"version": 2}, format="json"
    )
    assert response.status_code == 403
    assert SystemConfig.objects.get(key="ONCE_SECRET").value == "now-plain"
