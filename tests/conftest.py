"""Fixtures shared by the whole suite. Area-specific fixtures live in tests/<area>/conftest.py;
helpers (plain functions and classes) live in :mod:`tests.support`."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.core.management import call_command
from rest_framework.test import APIClient

from configsync.crypto.keyring import reset_keyring
from configsync.lookup import lookup_cache
from configsync.services.node import node_id_reset_cache
from providers.models import AIProviderConfig
from providers.services import ai_provider_set
from tests.factories import CANARY_SECRET
from tests.support.api import role_client
from tests.support.audit import audit_trail_down
from tests.support.canaries import CanaryLogWatch
from tests.support.cli import CliResult
from tests.support.providers import StubProvider, serve_stub_provider
from tests.support.xdist import isolate_worker

__all__ = ["CANARY_SECRET"]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, give this worker its own Redis DB and var/ (``tests.support.xdist``);
    search the whole session's logs for secret-leak canaries (``tests.support.canaries``)."""
    isolate_worker(settings)
    if not config.pluginmanager.has_plugin("canary-log-watch"):
        config.pluginmanager.register(CanaryLogWatch(), "canary-log-watch")


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    """Caches keyed on settings or on database contents never leak between tests."""
    reset_keyring()
    node_id_reset_cache()
    lookup_cache.invalidate_local()
    yield
    reset_keyring()
    node_id_reset_cache()
    lookup_cache.invalidate_local()


@pytest.fixture
def audit_down(db: None) -> Iterator[None]:
    """Every insert into the audit table fails until the test ends (``tests/support/audit.py``)."""
    with audit_trail_down():
        yield


@pytest.fixture
def canary() -> str:
    return CANARY_SECRET


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run ``manage.py configsync *args`` in this process; ``stdin=`` feeds standard input."""

    def run(*args: str, stdin: str | None = None) -> CliResult:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        out = io.StringIO()
        capsys.readouterr()
        try:
            call_command("configsync", *args, stdout=out)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return CliResult(code, out.getvalue(), capsys.readouterr().err)

    return run


@pytest.fixture
def client_for(db: None) -> Callable[[str], APIClient]:
    """``client_for(role)``: an APIClient authenticated as ``role`` (one of ``ROLES``)."""
    return role_client


@pytest.fixture
def stub_provider() -> Iterator[StubProvider]:
    """A local stub of the providers' model-list endpoints (``tests.support.providers``)."""
    with serve_stub_provider() as stub:
        yield stub


@pytest.fixture
def secret_provider(canary: str, db: None) -> AIProviderConfig:
    """An AI provider whose API key is the canary."""
    return ai_provider_set(name="openai-main", kind="openai", api_key=canary)
