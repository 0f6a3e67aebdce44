"""``GET /api/v1/audit/``: the reveal scope only, filters, paging, bad input; never a value."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from configsync.models import AuditEvent
from configsync.selectors.audit import AUDIT_EXPORT_FIELDS
from configsync.services.audit import audit_action
from configsync.services.system_config import system_config_set

pytestmark = pytest.mark.django_db

AUDIT = "/api/v1/audit/"


@pytest.fixture
def trail(canary: str) -> None:
    system_config_set(key="PLAIN", value="hello")
    system_config_set(key="TOKEN", value=canary, is_sensitive=True)
    audit_action(action="mode_switch", details={"from": "settings", "to": "LOCAL_ONLY"})


@pytest.mark.parametrize(
    ("role", "code"),
    [("anonymous", 401), ("read", 403), ("write", 403), ("reveal", 200), ("admin", 200)],
    ids=["anonymous", "read", "write", "reveal", "admin"],
)
def test_only_the_reveal_scope_reads_the_trail(
    client_for: Callable[[str], APIClient], trail: None, role: str, code: int, canary: str
) -> None:
    response = client_for(role).get(AUDIT)
    assert response.status_code == code
    assert canary.encode() not in response.content
    if code == 403:
        assert response.json()["detail"] == "This needs the reveal scope."
    if code == 200:
        rows = response.json()["results"]
        assert rows and all(tuple(row) == AUDIT_EXPORT_FIELDS for row in rows)


def test_filters_and_pages(client_for: Callable[[str], APIClient], trail: None) -> None:
    client = client_for("reveal")

    def keys(**query: str) -> list[str]:
        body = client.get(AUDIT, query).json()
        return [row["key"] or row["action"] for row in body["results"]]

    assert keys(key="TOKEN") == ["TOKEN"]
    assert keys(action="mode_switch") == ["mode_switch"]
    assert keys(model="configsync.systemconfig", since="1h") == ["TOKEN", "PLAIN"]
    first = client.get(AUDIT, {"via": "system", "limit": "2"}).json()
    assert len(first["results"]) == 2 and first["next"]
    second = client.get(first["next"]).json()
    assert second["next"] is None
    seen = [row["id"] for row in first["results"] + second["results"]]
    assert seen == sorted(seen, reverse=True)
    assert set(seen) == set(AuditEvent.objects.filter(via="system").values_list("id", flat=True))


@pytest.mark.parametrize(
    "query",
    [{"since": "soon"}, {"action": "explode"}, {"via": "mail"}, {"limit": "0"}, {"limit": "5000"}],
    ids=["since", "action", "via", "limit-low", "limit-high"],
)
def test_bad_query_is_400(
    client_for: Callable[[str], APIClient], trail: None, query: dict[str, str]
) -> None:
    response = client_for("reveal").get(AUDIT, query)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
