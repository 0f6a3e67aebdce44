"""Fixtures of the config API tests: records holding canary secrets, an admin client.

Clients per role (``client_for``), the provider stub (``stub_provider``) and a provider holding
a canary key (``secret_provider``) are in the root conftest; their helpers in :mod:`tests.support`.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def secret_setting(canary: str, db: None):  # type: ignore[no-untyped-def]
    from configsync.services.system_config import system_config_set

    return system_config_set(key="OPENAI_API_KEY", value=canary, is_sensitive=True)


@pytest.fixture
def plain_setting(db: None):  # type: ignore[no-untyped-def]
    from configsync.services.system_config import system_config_set

    return system_config_set(key="MAX_WORKERS", value=4, value_type="int", category="workers")
