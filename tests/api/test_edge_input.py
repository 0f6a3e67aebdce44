"""Input no database can store, or no parser should recurse into: a 400 with a reason, at the edge.

Each of these was a 500 (``UnicodeEncodeError``, ``RecursionError``, PostgreSQL's ``DataError``)
before ``configsync.api.parsers`` and ``configsync.middleware``. Runs on SQLite and, with
``TEST_DATABASE_URL``, on PostgreSQL, where a NUL reaching a query is the 500.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from configsync.api.parsers import json_depth_exceeds, storable_text_problem
from configsync.conf import app_settings
from configsync.models import ReplicatedRecord, SystemConfig
from configsync.replication.signing import sign
from providers.models import AIProviderConfig
from tests.support.api import key_client
from tests.support.replication import REMOTE, SECRET, remote_change, use_replication_settings

pytestmark = pytest.mark.django_db

SYSTEM = "/api/v1/configs/system/"
PROVIDERS = "/api/v1/configs/ai-providers/"
PUSH = "/api/v1/sync/push"
LONE = "\\ud800"  # a lone surrogate, as JSON escapes it
DEEP = 100_000


@pytest.fixture
def writer() -> APIClient:
    return key_client(write=True, name="edge-writer")


@pytest.fixture(autouse=True)
def _sync_settings(settings: Any) -> None:
    use_replication_settings(settings)


def raw_json(client: APIClient, method: str, path: str, raw: str, **extra: Any) -> Any:
    return client.generic(method, path, raw.encode(), content_type="application/json", **extra)


def signed_raw(path: str, raw: bytes) -> Any:
    headers = sign(secret=SECRET, method="POST", path=path, body=raw, node=REMOTE)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return APIClient().generic("POST", path, raw, content_type="application/json", **extra)


def assert_400_with_reason(response: Any, word: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    assert word in response.content.decode()


# --- lone surrogates in bodies ------------------------------------------------------------------

SURROGATE_BODIES = [
    pytest.param("POST", SYSTEM, f'{{"key": "S1", "value": "a{LONE}b"}}', id="value"),
    pytest.param(
        "POST",
        SYSTEM,
        f'{{"key": "S1", "value": {{"k": "{LONE}"}}, "value_type": "json"}}',
        id="json-value",
    ),
    pytest.param(
        "POST",
        SYSTEM,
        f'{{"key": "S1", "value": {{"{LONE}": 1}}, "value_type": "json"}}',
        id="json-key-inside-value",
    ),
    pytest.param("POST", SYSTEM, f'{{"key": "S{LONE}", "value": "v"}}', id="key"),
    pytest.param(
        "POST", SYSTEM, f'{{"key": "S1", "value": "v", "description": "{LONE}"}}', id="description"
    ),
    pytest.param("POST", SYSTEM, f'{{"key": "S1", "value": "v", "{LONE}": 1}}', id="body-key"),
    pytest.param(
        "POST",
        PROVIDERS,
        f'{{"name": "p1", "kind": "openai", "api_key": "sk-{LONE}"}}',
        id="provider-api-key",
    ),
]


@pytest.mark.parametrize(("method", "path", "raw"), SURROGATE_BODIES)
def test_lone_surrogate_in_a_body_is_400(
    writer: APIClient, method: str, path: str, raw: str
) -> None:
    assert_400_with_reason(raw_json(writer, method, path, raw), "surrogate")
    assert not SystemConfig.objects.exists() and not AIProviderConfig.objects.exists()


def test_lone_surrogate_in_a_patch_is_400_and_changes_nothing(writer: APIClient) -> None:
    writer.post(SYSTEM, {"key": "MODE", "value": "one"}, format="json")
    response = raw_json(writer, "PATCH", f"{SYSTEM}MODE/", f'{{"value": "x{LONE}"}}')
    assert_400_with_reason(response, "surrogate")
    assert "value" in response.json()
    assert SystemConfig.objects.get(key="MODE").value == "one"


def test_lone_surrogate_in_a_signed_push_is_400_and_applies_nothing() -> None:
    change = remote_change("A", "PLACEHOLDER")
    import json

    raw = json.dumps({"changes": [change]}).replace("PLACEHOLDER", "x" + LONE)
    assert_400_with_reason(signed_raw(PUSH, raw.encode()), "surrogate")
    assert not ReplicatedRecord.objects.exists() and not SystemConfig.objects.exists()


# --- nesting --------------------------------------------------------------------------------------


def test_deeply_nested_body_is_400_on_the_config_api(writer: APIClient) -> None:
    raw = '{"key": "D", "value_type": "json", "value": ' + "[" * DEEP + "]" * DEEP + "}"
    assert_400_with_reason(raw_json(writer, "POST", SYSTEM, raw), "nested deeper")
    assert not SystemConfig.objects.exists()


def test_deeply_nested_body_is_400_on_the_push_endpoint() -> None:
    raw = ('{"changes": ' + "[" * DEEP + "]" * DEEP + "}").encode()
    assert_400_with_reason(signed_raw(PUSH, raw), "nested deeper")
    assert not ReplicatedRecord.objects.exists()


def test_nesting_up_to_the_limit_is_accepted(writer: APIClient) -> None:
    inner = app_settings.MAX_JSON_DEPTH - 1  # the body object itself is one level
    raw = '{"key": "D", "value_type": "json", "value": ' + "[" * inner + "]" * inner + "}"
    response = raw_json(writer, "POST", SYSTEM, raw)
    assert response.status_code == 201, response.content
    too_deep = '{"key": "E", "value_type": "json", "value": ' + "[" * (inner + 1)
    too_deep += "]" * (inner + 1) + "}"
    assert raw_json(writer, "POST", SYSTEM, too_deep).status_code == 400


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert not json_depth_exceeds('{"a": "[[[[[[[[[[\\"[[[["}', 2)
    assert json_depth_exceeds('[[["]"]]]', 2)


# --- NUL and surrogates in the path, the query and headers ---------------------------------------


@pytest.mark.parametrize(
    "query",
    ["category=a%00b", "category=%00", "a%00b=1", "reveal=%00"],
    ids=["value", "whole-value", "name", "reveal-flag"],
)
def test_nul_in_a_query_parameter_is_400(writer: APIClient, query: str) -> None:
    assert_400_with_reason(writer.get(f"{SYSTEM}?{query}"), "NUL")


def test_nul_in_a_query_parameter_of_the_provider_api_is_400(writer: APIClient) -> None:
    assert_400_with_reason(writer.get(f"{PROVIDERS}?x=a%00b"), "NUL")


def test_nul_in_the_key_path_segment_is_400(writer: APIClient) -> None:
    for method in ("get", "put", "patch", "delete"):
        response = getattr(writer, method)(f"{SYSTEM}a%00b/", {"value": 1}, format="json")
        assert_400_with_reason(response, "NUL")
    assert_400_with_reason(writer.post(f"{PROVIDERS}p%00/test-connection/"), "NUL")


def test_nul_in_the_signed_feed_cursor_is_400() -> None:
    path = "/api/v1/sync/changes?since=1.%00"
    headers = sign(secret=SECRET, method="GET", path=path, body=b"", node=REMOTE)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    assert_400_with_reason(APIClient().get(path, **extra), "NUL")


@pytest.mark.parametrize(
    "header",
    ["HTTP_AUTHORIZATION", "HTTP_IF_MATCH", "HTTP_X_CONFIGSYNC_NODE"],
)
def test_nul_in_a_header_is_400(header: str) -> None:
    extra = {header: "Api-Key abc\x00def"}
    assert_400_with_reason(APIClient().get(SYSTEM, **extra), "Header")


def test_nul_in_an_admin_search_is_a_plain_400(admin_client: Any) -> None:
    response = admin_client.get("/admin/configsync/systemconfig/?q=a%00b")
    assert response.status_code == 400
    assert b"NUL" in response.content


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "N1", "value": "a\x00b"}, "value"),
        ({"key": "N\x00", "value": "v"}, "key"),
        ({"key": "N1", "value": "v", "category": "a\x00"}, "category"),
    ],
    ids=["value", "key", "category"],
)
def test_nul_in_a_json_body_is_400_naming_the_field(
    writer: APIClient, body: dict[str, Any], field: str
) -> None:
    response = writer.post(SYSTEM, body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not SystemConfig.objects.exists()


def test_nul_inside_a_json_value_is_400(writer: APIClient) -> None:
    # One rule for every value, wherever it enters: no string inside it holds a NUL (a JSON
    # value's strings included, although its canonical text would carry them escaped), so a
    # value read back never hands a NUL to a caller that stores it elsewhere.
    body = {"key": "J", "value": {"a\x00": "b\x00"}, "value_type": "json"}
    response = writer.post(SYSTEM, body, format="json")
    assert response.status_code == 400 and "value" in response.json()
    assert not SystemConfig.objects.filter(key="J").exists()


def test_form_encoded_body_with_nul_is_400(writer: APIClient) -> None:
    response = writer.post(
        SYSTEM, "key=K&value=a%00b", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400 and "value" in response.json()
    assert not SystemConfig.objects.exists()


# --- the predicate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "storable"),
    [("plain", True), ("émoji 😀", True), ("a\x00b", False), ("a\ud800", False), ("\udfff", False)],
)
def test_storable_text_predicate(text: str, storable: bool) -> None:
    assert (storable_text_problem(text) is None) is storable


# --- the same classes through the CLI, the admin and the services ----------------------------


DEEP_JSON = "[" * DEEP + "]" * DEEP


@pytest.mark.parametrize(
    ("args", "stdin", "field"),
    [
        (("set", "K", "-"), "a\x00b", "value"),
        (("set", "K", "a\udcffb"), None, "value"),  # a non-UTF-8 argument (surrogateescape)
        (("set", "K", "v", "--category", "c\udcff"), None, "category"),
        (("set", "K", DEEP_JSON, "--type", "json"), None, "value"),
        (("provider", "set", "p", "--kind", "openai", "--api-key", "-"), "sk-\x00", "api_key"),
        (
            ("provider", "set", "p", "--kind", "ollama", "--base-url", "http://h\udcff"),
            None,
            "base_url",
        ),
    ],
    ids=["stdin-nul", "argv-surrogate", "category-surrogate", "deep-json", "key-nul", "url"],
)
def test_cli_refuses_unstorable_text_with_one_line(
    cli: Any, args: tuple[str, ...], stdin: str | None, field: str
) -> None:
    result = cli(*args, stdin=stdin)
    assert result.code == 1 and result.err.startswith("configsync:") and field in result.err
    assert "Traceback" not in result.err
    assert not SystemConfig.objects.exists() and not AIProviderConfig.objects.exists()


def test_admin_refuses_deeply_nested_json(admin_client: Any) -> None:
    data = {"key": "DEEP", "value_type": "json", "value": DEEP_JSON, "category": "general"}
    response = admin_client.post("/admin/configsync/systemconfig/add/", data)
    assert response.status_code == 200
    assert "nested deeper than" in response.content.decode()
    assert not SystemConfig.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        SYSTEM,
        f"{SYSTEM}PLAIN/",
        f"{SYSTEM}MISSING/",
        PROVIDERS,
        f"{PROVIDERS}p1/",
        f"{PROVIDERS}p1/test-connection/",
        "/api/v1/schema/",
        "/api/v1/docs/",
        "/api/v1/health",
        "/api/v1/sync/status",
        "/api/v1/sync/trigger",
        "/api/v1/sync/strategies",
        "/api/v1/sync/conflicts/",
        "/api/v1/sync/conflicts/1/resolve",
        "/api/v1/sync/quarantine/",
        "/api/v1/sync/quarantine/1/retry",
        "/api/v1/sync/quarantine/1/drop",
    ],
)
@pytest.mark.parametrize("accept", ["*/*", "text/html", "application/json"])
def test_options_on_every_api_route_answers_without_a_500(
    writer: APIClient, canary: str, path: str, accept: str
) -> None:
    """DRF answers OPTIONS with metadata: for a detail route it asks the view for the object
    (``get_object``, which the natural-key views did not have), and the docs page has only an
    HTML renderer. Both were 500s for any caller with the read scope."""
    from configsync.services.system_config import system_config_set
    from providers.services import ai_provider_set

    system_config_set(key="PLAIN", value="x")
    ai_provider_set(name="p1", kind="openai", api_key=canary)
    writer.raise_request_exception = False
    response = writer.options(path, HTTP_ACCEPT=accept)
    assert response.status_code < 500, response.content[:300]
    assert canary.encode() not in response.content
