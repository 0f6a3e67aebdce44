"""The served OpenAPI schema beyond drf-spectacular's defaults (``configsync.api.openapi``).

Each is a finding of the schemathesis run (``test_schema_fuzz.py``), pinned here on its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from configsync.services.system_config import system_config_set
from tests.support.api import key_client
from tests.support.replication import use_replication_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema() -> dict[str, Any]:
    response = key_client().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return dict(response.json())


def _operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return dict(schema["paths"][path][method])


def _valid(schema: dict[str, Any], component: str, instance: dict[str, Any]) -> list[str]:
    """What ``instance`` lacks that ``component`` requires, and what it holds that a closed
    component does not declare (the two ways the findings broke the schema)."""
    declared = schema["components"]["schemas"][component]
    problems = [f"missing {name}" for name in declared.get("required", []) if name not in instance]
    if declared.get("additionalProperties") is False:
        problems += [
            f"undeclared {name}" for name in instance if name not in declared["properties"]
        ]
    return problems


def test_a_listed_setting_conforms_without_the_write_only_sensitivity_rule(schema) -> None:
    system_config_set(key="PLAIN", value="v")
    body = key_client().get("/api/v1/configs/system/").json()
    assert "sensitivity_rule" not in body[0]
    assert _valid(schema, "SystemConfig", body[0]) == []


def test_strict_bodies_refuse_unknown_fields_and_require_what_create_requires(schema) -> None:
    setting = schema["components"]["schemas"]["SystemConfig"]
    provider = schema["components"]["schemas"]["AIProvider"]
    assert setting["additionalProperties"] is False
    assert provider["additionalProperties"] is False
    assert {"key", "value"} <= set(setting["required"])
    assert {"name", "kind"} <= set(provider["required"])
    assert provider["properties"]["name"]["pattern"] == r"^[a-z0-9][a-z0-9_\-]{0,63}$"
    # PATCH bodies require nothing.
    assert "required" not in schema["components"]["schemas"]["PatchedSystemConfigUpdate"]


def test_every_authenticated_operation_documents_401_and_403(schema) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if operation.get("security"):
                assert {"401", "403"} <= codes, (method, path)
            else:
                assert path == "/api/v1/health", (method, path)
            if operation.get("requestBody"):
                assert {"400", "413", "415"} <= codes, (method, path)


def test_peer_answers_match_their_schemas(schema, settings) -> None:
    """A digest item has no data; a cursor that does not parse is a 400 with ``detail``."""
    from tests.replication.test_sync_api import signed

    use_replication_settings(settings)
    system_config_set(key="PLAIN", value="v")
    digest = signed("GET", "/api/v1/sync/digest")
    assert digest.status_code == 200
    assert _valid(schema, "DigestPage", digest.json()) == []
    assert [_valid(schema, "DigestItem", item) for item in digest.json()["changes"]] == [[]]
    assert set(digest.json()["changes"][0]) == {"model", "key", "hlc", "deleted"}
    bad = signed("GET", "/api/v1/sync/changes?since=nonsense")
    assert bad.status_code == 400
    assert _valid(schema, "QueryError", bad.json()) == []
    assert "400" in _operation(schema, "get", "/api/v1/sync/digest")["responses"]


def test_links_lead_from_create_to_the_record_and_from_lists_to_row_actions(schema) -> None:
    create = _operation(schema, "post", "/api/v1/configs/system/")["responses"]["201"]["links"]
    assert create["configs_system_destroy"] == {
        "operationId": "configs_system_destroy",
        "parameters": {"key": "$response.body#/key", "header.If-Match": "$response.header.ETag"},
    }
    assert create["configs_system_retrieve"]["parameters"] == {"key": "$response.body#/key"}
    assert {
        "configs_system_retrieve",
        "configs_system_update",
        "configs_system_history_retrieve",
    } <= set(create)
    providers = _operation(schema, "post", "/api/v1/configs/ai-providers/")["responses"]["201"]
    assert providers["links"]["configs_ai_providers_retrieve"]["parameters"] == {
        "name": "$response.body#/name"
    }
    conflicts = _operation(schema, "get", "/api/v1/sync/conflicts/")["responses"]["200"]["links"]
    assert conflicts["sync_conflicts_resolve"]["parameters"] == {"id": "$response.body#/0/id"}
    quarantine = _operation(schema, "get", "/api/v1/sync/quarantine/")["responses"]["200"]
    assert set(quarantine["links"]) == {"sync_quarantine_retry", "sync_quarantine_drop"}


def test_an_audit_query_out_of_range_is_a_documented_400() -> None:
    client = key_client(reveal=True)
    response = client.get("/api/v1/audit/?limit=60000")
    assert response.status_code == 400
    assert "limit" in response.json()


def test_a_body_in_a_media_type_no_parser_takes_is_a_documented_415(schema) -> None:
    client = key_client(write=True)
    response = client.post("/api/v1/sync/trigger", b"peer=x", content_type="text/plain")
    assert response.status_code == 415
    assert "415" in _operation(schema, "post", "/api/v1/sync/trigger")["responses"]


def test_the_schema_needs_the_read_scope() -> None:
    assert APIClient().get("/api/v1/schema/").status_code == 401
