"""Issue 12: the one secret rule at every edge (CLI, REST API, .env bridge) and strict,
consistent interfaces (unknown fields refused, 403 naming the scope, sentence messages, the
closest provider kind, the CLI's JSON field names equal to the API's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from configsync.envbridge.service import env_import
from configsync.models import SystemConfig
from providers.models import AIProviderConfig
from tests.support.api import key_client

pytestmark = pytest.mark.django_db

SYSTEM = "/api/v1/configs/system/"
PROVIDERS = "/api/v1/configs/ai-providers/"
CANARY = "sk-CANARY-strict-0001"

# (key, value, sensitive, rule) with no explicit choice.
RULE_TABLE = [
    ("STRIPE_API_KEY", CANARY, True, "name"),
    ("WEBHOOK_SECRET", CANARY, True, "name"),
    ("GITHUB_TOKEN", CANARY, True, "name"),
    ("SMTP_PASSWORD", CANARY, True, "name"),
    ("SENTRY_DSN", "https://abc@o1.ingest.sentry.io/1", True, "name"),
    ("DB2_URL", "postgres://admin:hunter22@db/app", True, "url_credentials"),
    ("CACHE_URL", "redis://:hunter22@cache:6379/0", True, "url_credentials"),
    ("SITE_URL", "https://example.com/a@b", False, "none"),
    ("SITE_NAME", "Example", False, "none"),
    ("KEYBOARD_LAYOUT", "us", False, "none"),
]


def _api_url(key: str) -> str:
    return f"{SYSTEM}{key}/"


@pytest.mark.parametrize(("key", "value", "sensitive", "rule"), RULE_TABLE)
def test_secret_rule_through_the_cli(
    cli: Any, key: str, value: str, sensitive: bool, rule: str
) -> None:
    result = cli("set", key, value, "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert (body["is_sensitive"], body["sensitivity_rule"]) == (sensitive, rule)
    assert SystemConfig.objects.get(key=key).is_sensitive is sensitive
    listing = cli("list").out
    assert (value in listing) is (not sensitive)
    line = cli("set", key, value).last_line
    assert line.endswith("(no secret rule applies)" if not sensitive else ")")
    if sensitive:
        assert "stored as sensitive" in line and value not in line


def test_cli_line_names_the_pattern_and_explicit_wins(cli: Any) -> None:
    assert cli("set", "STRIPE_KEY", CANARY).last_line == (
        "saved STRIPE_KEY (str): stored as sensitive (the name matches *_KEY)"
    )
    assert "DB2_URL (url): stored as sensitive (the value is a URL carrying credentials)" in (
        cli("set", "DB2_URL", "postgres://admin:hunter22@db/app", "--type", "url").last_line
    )
    assert "hunter22" not in cli("list").out
    assert cli("set", "OTHER_KEY", "x", "--plain").last_line.endswith("stored plain (as asked)")
    assert not SystemConfig.objects.get(key="OTHER_KEY").is_sensitive
    # An existing sensitive setting stays sensitive without a flag.
    cli("set", "NOTE", "a", "--sensitive")
    assert cli("set", "NOTE", "b").last_line.endswith("stored as sensitive (it already was)")
    assert SystemConfig.objects.get(key="NOTE").is_sensitive


@pytest.mark.parametrize(("key", "value", "sensitive", "rule"), RULE_TABLE)
def test_secret_rule_through_the_api(key: str, value: str, sensitive: bool, rule: str) -> None:
    client = key_client(write=True)
    response = client.post(SYSTEM, {"key": key, "value": value}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["is_sensitive"], body["sensitivity_rule"]) == (sensitive, rule)
    assert (value.encode() in response.content) is (not sensitive)
    assert SystemConfig.objects.get(key=key).is_sensitive is sensitive


def test_api_explicit_choice_wins_and_existing_secret_stays() -> None:
    client = key_client(write=True, reveal=True)
    response = client.post(
        SYSTEM,
        {"key": "PUBLIC_KEY", "value": "ssh-ed25519 AAAA", "is_sensitive": False},
        format="json",
    )
    assert response.status_code == 201
    assert (response.json()["is_sensitive"], response.json()["sensitivity_rule"]) == (
        False,
        "explicit",
    )
    client.post(SYSTEM, {"key": "NOTE", "value": "a", "is_sensitive": True}, format="json")
    response = client.patch(_api_url("NOTE"), {"value": "b"}, format="json")
    assert response.status_code == 200
    assert response.json()["is_sensitive"] and response.json()["sensitivity_rule"] == "existing"


@pytest.mark.parametrize(("key", "value", "sensitive", "rule"), RULE_TABLE)
def test_secret_rule_through_the_env_bridge(
    tmp_path: Path, key: str, value: str, sensitive: bool, rule: str
) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"{key}={value}\n")
    path.chmod(0o600)
    env_import(path=str(path))
    assert SystemConfig.objects.get(key=key).is_sensitive is sensitive


def test_env_secret_patterns_override_the_general_ones_for_the_bridge(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("SENTRY_DSN=plain\nDOOR_PIN=1234\n")
    path.chmod(0o600)
    with override_settings(CONFIGSYNC_ENV_SECRET_PATTERNS=["*_PIN"]):
        env_import(path=str(path))
    assert SystemConfig.objects.get(key="DOOR_PIN").is_sensitive
    assert not SystemConfig.objects.get(key="SENTRY_DSN").is_sensitive


def test_general_patterns_are_configurable(cli: Any) -> None:
    with override_settings(CONFIGSYNC_SECRET_PATTERNS=["*_PIN"]):
        assert cli("set", "DOOR_PIN", "1234").last_line.endswith("(the name matches *_PIN)")
        assert cli("set", "API_KEY", "x").last_line.endswith("(no secret rule applies)")
    with override_settings(CONFIGSYNC_SECRET_URL_CREDENTIALS=False):
        cli("set", "DB3_URL", "postgres://a:b@db/x")
    assert not SystemConfig.objects.get(key="DB3_URL").is_sensitive


# --- strict interfaces --------------------------------------------------------------------------


def test_unknown_config_fields_are_a_400_naming_them_and_nothing_is_stored() -> None:
    client = key_client(write=True)
    body = {"key": "limits.n", "value": "nope", "type": "int", "colour": "red"}
    response = client.post(SYSTEM, body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"type", "colour"}
    assert errors["type"] == ["Unknown field; did you mean value_type?"]
    assert "nope" not in response.content.decode()
    assert not SystemConfig.objects.filter(key="limits.n").exists()


def test_unknown_fields_on_update_and_provider_are_refused() -> None:
    client = key_client(write=True)
    created = client.post(SYSTEM, {"key": "N", "value": 1, "value_type": "int"}, format="json")
    # Read-only fields read back and sent again are accepted.
    echoed = {**created.json(), "value": 2}
    assert client.put(_api_url("N"), echoed, format="json").status_code == 200
    response = client.patch(_api_url("N"), {"value": 3, "sensitve": True}, format="json")
    assert response.status_code == 400 and "sensitve" in response.json()
    assert SystemConfig.objects.get(key="N").typed_value() == 2
    response = client.post(
        PROVIDERS, {"name": "o", "kind": "openai", "api_key": CANARY, "modle": "x"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"modle": ["Unknown field; did you mean default_model?"]}
    assert CANARY not in response.content.decode()
    assert not AIProviderConfig.objects.exists()


@pytest.mark.parametrize(
    ("client_args", "method", "url", "scope"),
    [
        ({}, "post", SYSTEM, "write"),
        ({}, "get", f"{SYSTEM}?reveal=true", "reveal"),
        ({"write": True}, "get", f"{PROVIDERS}?reveal=true", "reveal"),
        ({}, "delete", f"{PROVIDERS}x/", "write"),
    ],
)
def test_a_403_names_the_missing_scope(
    client_args: dict[str, bool], method: str, url: str, scope: str
) -> None:
    client = key_client(**client_args)
    if method == "get":
        response = client.get(url)
    else:
        response = getattr(client, method)(url, {"key": "A", "value": "b"}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == f"This needs the {scope} scope."


def test_provider_errors_read_as_sentences(cli: Any) -> None:
    result = cli(
        "provider",
        "set",
        "az",
        "--kind",
        "azure_openai",
        "--api-key",
        CANARY,
        "--endpoint",
        "https://x.openai.azure.com",
    )
    assert result.code == 1
    assert result.err.strip() == "configsync: deployment: Required for Azure OpenAI."
    assert CANARY not in result.err
    result = cli("set", "N", "abc", "--type", "int")
    assert result.code == 1 and result.err.strip().startswith("configsync: value: ")
    assert result.err.strip().endswith(".") and "; " not in result.err


def test_an_unknown_kind_suggests_the_closest(cli: Any) -> None:
    result = cli("provider", "set", "az", "--kind", "azure_opnai", "--api-key", CANARY)
    assert result.code == 1
    assert "did you mean azure_openai?" in result.err and CANARY not in result.err
    response = key_client(write=True).post(
        PROVIDERS, {"name": "az", "kind": "anthropik", "api_key": CANARY}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["kind"] == ["Not a provider kind; did you mean anthropic?"]
    assert not AIProviderConfig.objects.exists()


def test_cli_json_uses_the_api_field_names(cli: Any) -> None:
    cli("set", "N", "5", "--type", "int", "--category", "limits", "--description", "n")
    cli("set", "SMTP_PASSWORD", CANARY)
    api = key_client().get(SYSTEM).json()
    listed = json.loads(cli("list", "--json").out)
    api_fields = set(api[0]) - {"revealed"}
    for row in listed:
        assert api_fields <= set(row) and "type" not in row
    got = json.loads(cli("get", "N", "--json").out)
    assert {k: got[k] for k in ("key", "value", "value_type", "is_sensitive", "category")} == {
        "key": "N",
        "value": 5,
        "value_type": "int",
        "is_sensitive": False,
        "category": "limits",
    }
    assert CANARY not in cli("list", "--json").out
    cli("provider", "set", "o", "--kind", "openai", "--api-key", CANARY)
    api_provider = key_client().get(PROVIDERS).json()[0]
    cli_provider = json.loads(cli("provider", "list", "--json").out)[0]
    assert set(api_provider) - {"revealed"} <= set(cli_provider)
    assert CANARY not in json.dumps(cli_provider)


def test_an_unknown_field_named_by_a_secret_is_named_masked() -> None:
    """A key pasted where a field name belongs: the 400 names the field, but never the secret
    (``configsync.api.serializers.field_name_shown``); on every serializer with the mixin."""
    client = key_client(write=True)
    for url, body in (
        (SYSTEM, {"key": "X", "value": "v", CANARY: "x"}),
        (PROVIDERS, {"name": "o", "kind": "openai", CANARY: "x"}),
    ):
        response = client.post(url, body, format="json")
        assert response.status_code == 400
        assert CANARY not in response.content.decode()
        assert list(response.json()) == ["********"]
    response = client.post(SYSTEM, {"key": "X", "value": "v", "z" * 300: 1}, format="json")
    (name,) = response.json()
    assert response.status_code == 400 and len(name) == 100 and name.endswith("…")
