"""Which variables the bridge manages, the name/key mapping and the secret rule."""

from __future__ import annotations

import pytest
from django.test import override_settings

from configsync.envbridge.errors import EnvConfigError
from configsync.envbridge.policy import BridgePolicy, url_has_credentials


def test_default_manages_everything_but_this_nodes_own_settings() -> None:
    policy = BridgePolicy.from_settings()
    assert policy.manages("APP_NAME")
    for name in ("DJANGO_SECRET_KEY", "CONFIGSYNC_PEERS", "DATABASE_URL", "REDIS_URL"):
        assert not policy.manages(name)
    assert policy.name_for("a.b:c") is None  # a valid key, not a variable name


@override_settings(CONFIGSYNC_ENV_MANAGE="prefix:APP_", CONFIGSYNC_ENV_STRIP_PREFIX=True)
def test_prefix_with_stripping_maps_names_to_keys() -> None:
    policy = BridgePolicy.from_settings()
    assert policy.manages("APP_DEBUG") and not policy.manages("OTHER")
    assert policy.key_for("APP_DEBUG") == "DEBUG"
    assert policy.name_for("DEBUG") == "APP_DEBUG"


@override_settings(CONFIGSYNC_ENV_MANAGE="allow:A, B")
def test_allow_list() -> None:
    policy = BridgePolicy.from_settings()
    assert policy.manages("A") and policy.manages("B") and not policy.manages("C")


@override_settings(CONFIGSYNC_ENV_EXCLUDE=[])
def test_exclusions_can_be_lifted() -> None:
    assert BridgePolicy.from_settings().manages("DATABASE_URL")


@pytest.mark.parametrize("raw", ["bogus", "prefix:", "allow:"])
def test_bad_manage_option_is_a_clear_error(raw: str) -> None:
    with override_settings(CONFIGSYNC_ENV_MANAGE=raw), pytest.raises(EnvConfigError):
        BridgePolicy.from_settings()


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("STRIPE_API_KEY", "x", True),
        ("jwt_secret", "x", True),
        ("GITHUB_TOKEN", "x", True),
        ("DB_PASSWORD", "x", True),
        ("CACHE_URL", "redis://:hunter2@cache:6379/0", True),
        ("CACHE_URL", "redis://cache:6379/0", False),
        ("APP_NAME", "x", False),
        ("KEYBOARD", "x", False),
    ],
)
def test_secret_rule(name: str, value: str, secret: bool) -> None:
    assert BridgePolicy.from_settings().is_secret(name, value) is secret


@override_settings(
    CONFIGSYNC_ENV_SECRET_PATTERNS=["*_PIN"], CONFIGSYNC_ENV_SECRET_URL_CREDENTIALS=False
)
def test_secret_rule_is_overridable() -> None:
    policy = BridgePolicy.from_settings()
    assert policy.is_secret("CARD_PIN", "1") and not policy.is_secret("API_KEY", "x")
    assert not policy.is_secret("URL", "https://u:p@h/")


def test_url_credentials() -> None:
    assert url_has_credentials("https://user:pw@example.com/")
    assert url_has_credentials("https://token@example.com/")
    assert not url_has_credentials("https://example.com/a@b")
    assert not url_has_credentials("not a url @ all")
