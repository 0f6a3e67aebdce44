"""schemathesis against the in-process WSGI app: no 5xx, every response conforms to the schema.

The schema is the one the API serves (``/api/v1/schema/``), loaded through the WSGI app with an
API key holding every scope; each operation gets a bounded number of generated examples.
Test-connection is left out: it calls the provider's URL, outside this process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from configsync.services.api_keys import api_key_create

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def auth_headers(db: None) -> dict[str, str]:
    _, key = api_key_create(name="schemathesis", can_write=True, can_reveal=True)
    return {"Authorization": f"Api-Key {key}"}


@pytest.fixture
def wsgi_app() -> Iterator[object]:
    """The project's WSGI app, keeping the test's database connection open between requests.

    As Django's own test client does: the handler would otherwise close the connection (and so
    the test transaction) at the end of every request.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(auth_headers: dict[str, str], wsgi_app: object):  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/schema/?format=json", wsgi_app, headers=auth_headers
    )
    return schema.include(path_regex="^/api/v1/configs/").exclude(path_regex="test-connection")


def test_api_conforms_to_its_schema(api_schema, auth_headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    # Driven through Hypothesis directly: schemathesis's pytest plugin does not support pytest 9.
    tested = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tested.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(headers=auth_headers, checks=CHECKS)

        check()
    assert "PATCH /api/v1/configs/system/{key}/" in tested
    assert "POST /api/v1/configs/ai-providers/" in tested
