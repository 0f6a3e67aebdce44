"""The system settings API: typed values, masking, ETag/If-Match and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from configsync.conf import app_settings
from configsync.models import SystemConfig

SYSTEM = "/api/v1/configs/system/"


@pytest.fixture
def writer(client_for: Callable[[str], APIClient]) -> APIClient:
    return client_for("write")


@pytest.mark.parametrize(
    ("value_type", "value"),
    [
        ("str", "hello"),
        ("int", 42),
        ("float", 2.5),
        ("bool", True),
        ("json", {"a": [1, 2], "b": None}),
        ("json", "just a string"),
        ("url", "https://example.com/x"),
    ],
)
def test_typed_values_round_trip(writer: APIClient, value_type: str, value: object) -> None:
    created = writer.post(
        SYSTEM, {"key": "TYPED", "value": value, "value_type": value_type}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["value"] == value
    fetched = writer.get(f"{SYSTEM}TYPED/").json()
    assert fetched["value"] == value
    assert fetched["value_type"] == value_type
    assert fetched["has_value"] is True


def test_sensitive_value_is_masked_and_write_only(writer: APIClient, canary: str) -> None:
    created = writer.post(
        SYSTEM, {"key": "DB_PASSWORD", "value": canary, "is_sensitive": True}, format="json"
    )
    assert created.status_code == 201
    body = created.json()
    assert body["value"] == "********"
    assert body["has_value"] is True
    assert body["revealed"] is False
    assert canary.encode() not in created.content
    # PATCH of another attribute keeps the secret.
    patched = writer.patch(f"{SYSTEM}DB_PASSWORD/", {"description": "db"}, format="json")
    assert patched.status_code == 200
    assert SystemConfig.objects.get(key="DB_PASSWORD").raw_value() == canary


def test_reveal_returns_plaintext_to_reveal_scope(
    client_for: Callable[[str], APIClient], secret_setting: SystemConfig, canary: str
) -> None:
    response = client_for("reveal").get(f"{SYSTEM}OPENAI_API_KEY/", {"reveal": "true"})
    assert response.status_code == 200
    assert response.json()["value"] == canary
    assert response.json()["revealed"] is True


def test_etag_and_if_match(writer: APIClient, plain_setting: SystemConfig) -> None:
    url = f"{SYSTEM}MAX_WORKERS/"
    first = writer.get(url)
    etag = first["ETag"]
    assert etag.startswith('"')
    ok = writer.patch(url, {"value": 5}, format="json", HTTP_IF_MATCH=etag)
    assert ok.status_code == 200
    assert ok["ETag"] != etag
    # A second operator still holding the old ETag is refused; nothing is saved.
    stale = writer.patch(url, {"value": 6}, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert stale.json()["detail"]
    stale_put = writer.put(url, {"value": 6}, format="json", HTTP_IF_MATCH=etag)
    assert stale_put.status_code == 412
    stale_delete = writer.delete(url, HTTP_IF_MATCH=etag)
    assert stale_delete.status_code == 412
    garbage = writer.patch(url, {"value": 6}, format="json", HTTP_IF_MATCH="not-an-etag")
    assert garbage.status_code == 412
    assert SystemConfig.objects.get(key="MAX_WORKERS").typed_value() == 5
    star = writer.patch(url, {"value": 7}, format="json", HTTP_IF_MATCH="*")
    assert star.status_code == 200
    current = writer.get(url)["ETag"]
    assert writer.delete(url, HTTP_IF_MATCH=current).status_code == 204
    assert not SystemConfig.objects.filter(key="MAX_WORKERS").exists()


def test_missing_if_match_is_allowed(writer: APIClient, plain_setting: SystemConfig) -> None:
    assert writer.patch(f"{SYSTEM}MAX_WORKERS/", {"value": 1}, format="json").status_code == 200


def test_put_requires_value_and_keeps_omitted_attributes(
    writer: APIClient, plain_setting: SystemConfig
) -> None:
    url = f"{SYSTEM}MAX_WORKERS/"
    assert writer.put(url, {"description": "x"}, format="json").status_code == 400
    response = writer.put(url, {"value": 12}, format="json")
    assert response.status_code == 200
    assert response.json()["category"] == "workers"
    assert response.json()["value"] == 12


@pytest.mark.parametrize("key", ["NOPE", "x" * 300])
def test_unknown_key_is_404(writer: APIClient, key: str) -> None:
    for method in ("get", "put", "patch", "delete"):
        response = getattr(writer, method)(f"{SYSTEM}{key}/", {"value": 1}, format="json")
        assert response.status_code == 404, method
        assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("key", ["%00", "a%00b"])
def test_key_no_database_can_store_is_400(writer: APIClient, key: str) -> None:
    """A NUL in the path is refused at the edge (configsync.middleware), before any lookup."""
    for method in ("get", "put", "patch", "delete"):
        response = getattr(writer, method)(f"{SYSTEM}{key}/", {"value": 1}, format="json")
        assert response.status_code == 400, method
        assert "NUL" in response.json()["detail"]


BAD_BODIES = [
    ({"key": "X1", "value": "sk-CANARY-bad", "value_type": "int"}, "value"),
    ({"key": "X1", "value": True, "value_type": "int"}, "value"),
    ({"key": "X1", "value": 12, "value_type": "str"}, "value"),
    ({"key": "X1", "value": {"a": 1}, "value_type": "int"}, "value"),
    ({"key": "X1", "value": "sk-CANARY-bad", "value_type": "sk-CANARY-type"}, "value_type"),
    ({"key": "X1", "value": "sk-CANARY-bad", "value_type": "url"}, "value"),
    ({"key": "X1", "value": None}, "value"),
    ({"key": "X1", "value": "sk-CANARY\x00nul"}, "value"),
    ({"key": "X1", "value": "v", "description": "sk-CANARY\x00"}, "description"),
    ({"key": "X1"}, "value"),
    ({"key": "bad key sk-CANARY", "value": "v"}, "key"),
    ({"value": "v"}, "key"),
    ({"key": "X1", "value": "v", "is_sensitive": "sk-CANARY-bool"}, "is_sensitive"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_input_is_rejected_without_echo(writer: APIClient, body: dict, field: str) -> None:
    response = writer.post(SYSTEM, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert b"sk-CANARY" not in response.content
    assert SystemConfig.objects.count() == 0


def test_oversize_value_is_rejected(writer: APIClient) -> None:
    big = "x" * (app_settings.MAX_VALUE_BYTES + 1)
    response = writer.post(SYSTEM, {"key": "BIG", "value": big}, format="json")
    assert response.status_code == 400
    assert "value" in response.json()
    big_json = {"k": "x" * app_settings.MAX_VALUE_BYTES}
    response = writer.post(
        SYSTEM, {"key": "BIG", "value": big_json, "value_type": "json"}, format="json"
    )
    assert response.status_code == 400
    assert not SystemConfig.objects.filter(key="BIG").exists()


def test_malformed_json_is_400(writer: APIClient, plain_setting: SystemConfig) -> None:
    response = writer.generic(
        "PATCH",
        f"{SYSTEM}MAX_WORKERS/",
        '{"value": sk-CANARY-broken',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert b"sk-CANARY" not in response.content
    assert SystemConfig.objects.get(key="MAX_WORKERS").typed_value() == 4


def test_duplicate_create_is_400(writer: APIClient, plain_setting: SystemConfig) -> None:
    response = writer.post(SYSTEM, {"key": "MAX_WORKERS", "value": 1}, format="json")
    assert response.status_code == 400
    assert SystemConfig.objects.get(key="MAX_WORKERS").typed_value() == 4


def test_bad_reveal_parameter_is_400(writer: APIClient, plain_setting: SystemConfig) -> None:
    assert writer.get(f"{SYSTEM}MAX_WORKERS/", {"reveal": "maybe"}).status_code == 400


def test_list_filters_by_category(
    writer: APIClient, plain_setting: SystemConfig, secret_setting: SystemConfig
) -> None:
    keys = [row["key"] for row in writer.get(SYSTEM, {"category": "workers"}).json()]
    assert keys == ["MAX_WORKERS"]


def test_request_body_over_the_upload_limit_is_json_413(writer: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = writer.post(SYSTEM, {"key": "BIG", "value": "sk-CANARY" * 200}, format="json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert b"sk-CANARY" not in response.content
    assert not SystemConfig.objects.filter(key="BIG").exists()


def test_a_secret_this_node_cannot_decrypt_is_a_json_500_and_not_a_reveal(
    client_for: Callable[[str], APIClient], secret_setting: SystemConfig
) -> None:
    from configsync.crypto.fields import encryption_context
    from configsync.crypto.keyring import Keyring, generate_key, parse_key
    from configsync.models import AuditEvent

    lost = Keyring([parse_key(generate_key())]).encrypt(
        "sk-CANARY-lost-key", context=encryption_context(secret_setting, "secret_value")
    )
    SystemConfig.objects.filter(key="OPENAI_API_KEY").update(secret_value=lost)
    url = f"{SYSTEM}OPENAI_API_KEY/"
    revealer = client_for("reveal")
    for response in (revealer.get(url, {"reveal": "true"}), revealer.get(SYSTEM, {"reveal": "1"})):
        assert response.status_code == 500
        assert response["Content-Type"] == "application/json"
        detail = response.json()["detail"]
        assert "OPENAI_API_KEY" in detail and "secret_value" in detail
        assert b"enc1:" not in response.content and b"sk-CANARY" not in response.content
    assert not AuditEvent.objects.filter(action="reveal").exists(), (
        "nothing was revealed, so nothing is audited"
    )
    # Masked reads and metadata writes need no decryption and keep the stored token.
    assert revealer.get(url).json()["value"] == "********"
    patched = client_for("write").patch(url, {"description": "kept"}, format="json")
    assert patched.status_code == 200, patched.content
    assert SystemConfig.objects.values_list("secret_value", flat=True).get(
        key="OPENAI_API_KEY"
    ) == (lost)


def test_a_listing_with_reveal_audits_each_secret_once(
    client_for: Callable[[str], APIClient], secret_setting: SystemConfig, canary: str
) -> None:
    from configsync.models import AuditEvent
    from configsync.services.system_config import system_config_set

    system_config_set(key="SECOND_SECRET", value="sk-CANARY-second", is_sensitive=True)
    system_config_set(key="PLAIN", value="visible")
    response = client_for("reveal").get(SYSTEM, {"reveal": "true"})
    assert response.status_code == 200
    assert {row["key"]: row["value"] for row in response.json()}["OPENAI_API_KEY"] == canary
    assert sorted(
        AuditEvent.objects.filter(action="reveal").values_list("natural_key", flat=True)
    ) == [
        "OPENAI_API_KEY",
        "SECOND_SECRET",
    ]


def test_a_stored_value_that_no_longer_parses_does_not_take_the_list_down(
    writer: APIClient, cli: Callable[..., object]
) -> None:
    # Rows stored before every path validated (or loaded raw) may hold text that does not parse
    # as their type: each such row is reported, the others are served.
    writer.post(SYSTEM, {"key": "GOOD", "value": 1, "value_type": "int"}, format="json")
    writer.post(SYSTEM, {"key": "BAD", "value": 2, "value_type": "int"}, format="json")
    SystemConfig.objects.filter(key="BAD").update(value="abc")

    listed = writer.get(SYSTEM)
    assert listed.status_code == 200
    by_key = {item["key"]: item for item in listed.json()}
    assert by_key["GOOD"]["value"] == 1 and by_key["GOOD"]["value_error"] is None
    assert by_key["BAD"]["value"] is None and "whole number" in by_key["BAD"]["value_error"]
    assert writer.get(f"{SYSTEM}BAD/").json()["value_error"]

    result = cli("list", "--json")
    assert result.code == 0, result.err  # type: ignore[attr-defined]
    rows = {row["key"]: row for row in json.loads(result.out)}  # type: ignore[attr-defined]
    assert rows["BAD"]["value"] is None and rows["BAD"]["value_error"]
