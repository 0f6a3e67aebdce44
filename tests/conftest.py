"""Fixtures shared by the whole suite. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from configsync.crypto.keyring import reset_keyring
from configsync.lookup import lookup_cache
from configsync.services.node import node_id_reset_cache
from tests.factories import (
    CANARY_SECRET,
    AIProviderConfigFactory,
    SensitiveSystemConfigFactory,
    SystemConfigFactory,
)

__all__ = ["CANARY_SECRET"]


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
def canary() -> str:
    return CANARY_SECRET


@pytest.fixture
def system_config_factory() -> type[SystemConfigFactory]:
    return SystemConfigFactory


@pytest.fixture
def sensitive_config_factory() -> type[SensitiveSystemConfigFactory]:
    return SensitiveSystemConfigFactory


@pytest.fixture
def ai_provider_factory() -> type[AIProviderConfigFactory]:
    return AIProviderConfigFactory
