"""schemathesis over every operation of the served OpenAPI schema, in process (WSGI).

Every operation of ``/api/v1/schema/`` is generated against, with the credentials it takes: an
API key for the operator endpoints, a peer signature for the sync endpoints (a WSGI wrapper signs
exactly the bytes schemathesis sends, with the project's own ``sign``). Before the run the node
holds canary secrets (a sensitive setting, a provider's API key, a conflict whose peer version is
another canary, a quarantined change), so list, read, history, conflict and quarantine endpoints
all have something to leak. Checks: no 5xx, status code, content type and body conform to the
schema, and ``no_canary`` (no response made without reveal holds a canary, plain, base64 or
URL-encoded). Then the stateful run follows the schema's links (create -> read -> update ->
delete, conflicts list -> resolve, quarantine list -> retry/drop).

Budget: ``SCHEMATHESIS_MAX_EXAMPLES`` valid examples per operation (default 20; half as many
invalid ones, and half as many for the reveal key's reads) and as many stateful scenarios;
``SCHEMATHESIS_MAX_EXAMPLES=500`` is the long run (README, "Proof and figures").
Test-connection is left out: it calls the provider's URL, outside this process.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIRequest
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from configsync.replication.signing import sign
from configsync.services.api_keys import api_key_create
from tests.support.conflicts import setting_conflict
from tests.support.quarantine import quarantine_change
from tests.support.replication import REMOTE, SECRET, use_replication_settings

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "20"))
PEER_PATHS = frozenset(
    {"/api/v1/sync/changes", "/api/v1/sync/digest", "/api/v1/sync/push", "/api/v1/sync/log"}
)
CANARIES = (
    "sk-CANARY-fuzz-setting-4f1d9c",
    "sk-CANARY-fuzz-provider-77ab20",
    "sk-CANARY-fuzz-conflict-e3c5aa",
    "sk-CANARY-fuzz-quarantine-90bd17",
    "sk-CANARY-fuzz-local-5a0e33",
)


def leak_forms(secret: str) -> set[bytes]:
    """``secret`` as it could appear in a body: plain, URL-encoded, and base64 / base64url at each
    of the three alignments it can have inside a longer encoded text (padding stripped)."""
    raw = secret.encode()
    forms = {raw, urllib.parse.quote(secret).encode(), urllib.parse.quote_plus(secret).encode()}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw)
            # Drop the characters that depend on the neighbours (prefix and the final group).
            start = (offset * 4 + 2) // 3 if offset else 0
            forms.add(encoded[start : len(encoded) - 4])
    return forms


LEAK_FORMS = {form: secret for secret in CANARIES for form in leak_forms(secret)}


def _asked_reveal(case: Any) -> bool:
    value = (case.query or {}).get("reveal")
    return str(value).lower() in {"true", "1", "yes", "on", "t", "y"}


def no_canary(ctx: Any, response: Any, case: Any) -> None:
    """Fails when a response to a request that did not ask for reveal holds a canary (any form).

    Headers count too. With reveal asked, only callers holding the reveal scope get values, and
    the run's non-reveal key is checked strictly on every request."""
    if _asked_reveal(case) and REVEAL_AUTH:
        return None
    text = response.content + repr(dict(response.headers)).encode()
    for form, secret in LEAK_FORMS.items():
        if form in text:
            raise AssertionError(f"{case.method} {case.formatted_path}: canary {secret!r} leaked")
    return None


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """schemathesis' ``not_a_server_error``, except health's documented 503 (a component down:
    in this process there is no worker or beat, so ``?strict=1`` says so)."""
    if case.operation.path == "/api/v1/health" and response.status_code == 503:
        assert response.json()["status"] == "error", response.text
        return None
    return not_a_server_error(ctx, response, case)


REVEAL_AUTH: dict[str, str] = {}
CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    no_canary,
]


def peer_signing(app: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps the WSGI app: requests to the peer endpoints are signed as node ``REMOTE`` signs
    them, over the exact path, query and body bytes received (what the server verifies)."""

    def signed(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") in PEER_PATHS:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            path = WSGIRequest({**environ, "wsgi.input": io.BytesIO()}).get_full_path()
            headers = sign(
                secret=SECRET, method=environ["REQUEST_METHOD"], path=path, body=body, node=REMOTE
            )
            for name, value in headers.items():
                environ[f"HTTP_{name.upper().replace('-', '_')}"] = value
        return app(environ, start_response)

    return signed


@pytest.fixture
def wsgi_app() -> Iterator[Callable[..., Any]]:
    """The project's WSGI app, keeping the test's database connection open between requests.

    As Django's own test client does: the handler would otherwise close the connection (and so
    the test transaction) at the end of every request.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield peer_signing(get_wsgi_application())
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def canaries(settings: Any, db: None) -> None:
    """The node holds every canary before the run, through the services and a signed push."""
    from configsync.services.system_config import system_config_set
    from providers.services import ai_provider_set

    use_replication_settings(settings)
    system_config_set(key="FUZZ_CANARY_TOKEN", value=CANARIES[0], is_sensitive=True)
    system_config_set(key="FUZZ_PLAIN", value="plain-value")
    ai_provider_set(name="fuzz-canary", kind="openai", api_key=CANARIES[1])
    setting_conflict("FUZZ_CONFLICTED", local=CANARIES[4], remote=CANARIES[2], sensitive=True)
    quarantine_change("FUZZ_QUARANTINED", CANARIES[3])


def _key(**scopes: bool) -> dict[str, str]:
    _, key = api_key_create(name=f"fuzz-{'-'.join(sorted(scopes)) or 'read'}", **scopes)
    return {"Authorization": f"Api-Key {key}"}


@pytest.fixture
def api_schema(canaries: None, wsgi_app: Callable[..., Any]) -> Any:
    headers = _key(can_write=True)
    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/schema/?format=json", wsgi_app, headers=headers
    )
    return schema.exclude(path_regex="test-connection")


def _operations(schema: Any) -> Iterable[Any]:
    for result in schema.get_all_operations():
        yield result.ok()


def _run(operation: Any, headers: dict[str, str]) -> None:
    _run_mode(operation, headers, GenerationMode.POSITIVE, MAX_EXAMPLES)
    # Nothing of some operations can be made invalid (no parameter, no body): Unsatisfiable.
    with contextlib.suppress(Unsatisfiable):
        _run_mode(operation, headers, GenerationMode.NEGATIVE, max(MAX_EXAMPLES // 2, 1))


def _run_mode(operation: Any, headers: dict[str, str], mode: GenerationMode, examples: int) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


def test_every_operation_conforms_and_leaks_nothing(api_schema: Any) -> None:
    """A write key (no reveal) over every operation: any canary in any response is a leak."""
    write = _key(can_write=True)
    tested = set()
    for operation in _operations(api_schema):
        tested.add(f"{operation.method.upper()} {operation.path}")
        _run(operation, {} if operation.path.removeprefix("/api/v1") in _peer_suffixes() else write)
    assert {
        "POST /api/v1/sync/push",
        "GET /api/v1/sync/changes",
        "POST /api/v1/sync/conflicts/{id}/resolve",
        "POST /api/v1/sync/quarantine/{id}/retry",
        "PATCH /api/v1/configs/system/{key}/",
        "GET /api/v1/audit/",
        "POST /api/v1/sync/trigger",
    } <= tested


def _peer_suffixes() -> set[str]:
    return {path.removeprefix("/api/v1") for path in PEER_PATHS}


def test_reveal_key_reads_leak_nothing_unless_revealing(api_schema: Any) -> None:
    """A reveal key over the reads: a canary may come back only to a request asking reveal."""
    REVEAL_AUTH["value"] = _key(can_reveal=True)["Authorization"]
    try:
        for operation in _operations(api_schema.include(method="GET")):
            if operation.path.removeprefix("/api/v1") in _peer_suffixes():
                continue
            reveal = {"Authorization": REVEAL_AUTH["value"]}
            _run_mode(operation, reveal, GenerationMode.POSITIVE, max(MAX_EXAMPLES // 2, 1))
    finally:
        REVEAL_AUTH.clear()


def test_stateful_links_create_read_update_delete(api_schema: Any) -> None:
    """schemathesis' state machine over the schema's links, with the same checks: a created
    setting or provider is read, updated, deleted by the key its 201 named; a listed conflict
    is resolved and a quarantined change retried or dropped by the id its list named."""
    write = _key(can_write=True)
    seen: dict[str, set[int]] = {}
    # Positive data only: a scenario reaches an update or a delete only through a create that
    # succeeded (invalid input is the per-operation tests' negative half).
    api_schema.config.generation.update(modes=[GenerationMode.POSITIVE])
    base = api_schema.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        # Every scenario starts from the fixtures' state (a savepoint rolled back after it):
        # Hypothesis replays a failing scenario to shrink it, and the links draw from responses.
        def setup(self) -> None:
            self._scenario = transaction.atomic()
            self._scenario.__enter__()

        def teardown(self) -> None:
            transaction.set_rollback(True)
            self._scenario.__exit__(None, None, None)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            if case.operation.path in PEER_PATHS:
                return {}
            return {"headers": write}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            seen.setdefault(f"{case.method.upper()} {case.operation.path}", set()).add(
                response.status_code
            )

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    Machine.run(
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
    )
    followed = {label for label, codes in seen.items() if codes & {200, 201, 202, 204}}
    print("SEEN", sorted(seen.items()))
    # Reached only through a link (a generated key or id names no record). Which of a created
    # record's links a bounded run draws varies; ``test_links_lead_*`` follows each one.
    assert {
        "POST /api/v1/configs/system/",
        "GET /api/v1/configs/ai-providers/{name}/",
        "POST /api/v1/sync/conflicts/{id}/resolve",
        "POST /api/v1/sync/quarantine/{id}/retry",
    } <= followed, seen


def _follow(link: dict[str, Any], response: Any) -> dict[str, dict[str, str]]:
    """The parameters ``link`` takes from ``response`` (``$response.body#/x``,
    ``$response.header.X``), by location."""
    found: dict[str, dict[str, str]] = {"path": {}, "headers": {}}
    for name, expression in link["parameters"].items():
        location, _, bare = name.rpartition(".")
        if expression.startswith("$response.body#/"):
            value = response.json()[expression.removeprefix("$response.body#/")]
        else:
            wanted = expression.removeprefix("$response.header.").lower()
            (value,) = [v for k, v in response.headers.items() if k.lower() == wanted]
            value = value[0] if isinstance(value, list) else value
        found["headers" if location == "header" else "path"][bare] = value
    return found


CHAINS = {
    "/api/v1/configs/system/": (
        {"key": "LINKED_SETTING", "value": "one", "description": "linked"},
        {"value": "two"},
    ),
    "/api/v1/configs/ai-providers/": (
        {"name": "linked-provider", "kind": "ollama"},
        {"kind": "ollama", "default_model": "llama3"},
    ),
}


@pytest.mark.parametrize("collection", sorted(CHAINS))
def test_links_lead_from_a_create_to_read_update_and_delete(
    api_schema: Any, collection: str
) -> None:
    """Each link of a create's 201, followed with what the response names (the key and the ETag
    as ``If-Match``), reaches the record: read, history, update, partial update, then delete."""
    write = _key(can_write=True)
    body, update = CHAINS[collection]
    create = api_schema[collection]["POST"]
    first = create.Case(body=body, media_type="application/json")
    response = first.call(headers=write)
    first.validate_response(response, checks=CHECKS)
    assert response.status_code == 201, response.text
    links = api_schema.raw_schema["paths"][collection]["post"]["responses"]["201"]["links"]
    order = sorted(links, key=lambda op: ("destroy" in op, op))
    for operation_id in order:
        if operation_id.endswith("rollback_create"):
            continue  # needs a version number, which the create's answer does not hold
        operation = api_schema.find_operation_by_id(operation_id)
        taken = _follow(links[operation_id], response)
        extra: dict[str, Any] = {}
        if operation.method.upper() in ("PUT", "PATCH"):
            extra = {"body": update, "media_type": "application/json"}
        case = operation.Case(path_parameters=taken["path"], headers=taken["headers"], **extra)
        answer = case.call(headers={**write, **taken["headers"]})
        case.validate_response(answer, checks=CHECKS)
        assert answer.status_code in (200, 204), (operation_id, answer.status_code, answer.text)
        if any(k.lower() == "etag" for k in answer.headers):
            response = answer  # the next write names the version this one made
    assert "destroy" in order[-1]


def test_the_canary_check_sees_every_form() -> None:
    """``no_canary`` fails on a canary plain, URL-encoded and base64 at any alignment, and
    passes a body without one (the check itself can fail)."""

    class FakeResponse:
        headers: dict[str, str] = {}

        def __init__(self, content: bytes) -> None:
            self.content = content

    class FakeCase:
        method = "GET"
        formatted_path = "/x"
        query: dict[str, str] = {}

    secret = CANARIES[0]
    bodies = [
        b'{"v": "' + secret.encode() + b'"}',
        urllib.parse.quote(f"a={secret}").encode(),
        *(base64.b64encode(b"x" * n + secret.encode() + b"tail") for n in range(3)),
        *(base64.urlsafe_b64encode(b"\xff" * n + secret.encode()) for n in range(3)),
    ]
    for body in bodies:
        with pytest.raises(AssertionError, match="leaked"):
            no_canary(None, FakeResponse(body), FakeCase())
    no_canary(None, FakeResponse(b'{"value": "********"}'), FakeCase())
