"""Declared settings (configsync.schema): defaults, config.KEY, and the checks E050/E051/W050."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured, ValidationError

import configsync
from configsync import ConfigKeyError, config, declare, get_system_config
from configsync.checks import check_declared_settings, check_stored_declared_values
from configsync.lookup import lookup_cache
from configsync.schema import declaration_get, declarations, undeclare
from configsync.services.system_config import system_config_delete, system_config_set

pytestmark = pytest.mark.django_db

SCHEMA = {
    "SITE_NAME": {"type": "str", "default": "Example", "help_text": "Shown in titles."},
    "MAX_ITEMS": {"type": "int", "default": 20, "category": "limits"},
    "FEATURE_X": {"type": "bool", "default": "false"},
    "LAYOUT": {"type": "json", "default": {"columns": [1, 2]}},
}


@pytest.fixture
def schema(settings: Any) -> dict[str, Any]:
    settings.CONFIGSYNC_SCHEMA = SCHEMA
    lookup_cache.invalidate_local()
    return SCHEMA


@pytest.fixture
def declared() -> Iterator[None]:
    declare("APP_COLOR", type="str", default="blue", choices=["blue", "red"])
    yield
    undeclare("APP_COLOR")


def test_public_api_exports_declare_and_config() -> None:
    assert "declare" in configsync.__all__ and "config" in configsync.__all__


def test_defaults_served_before_a_value_is_stored_then_replaced_then_restored(
    schema: dict[str, Any],
) -> None:
    assert get_system_config("SITE_NAME") == "Example"
    assert get_system_config("MAX_ITEMS") == 20
    assert get_system_config("FEATURE_X") is False
    assert get_system_config("LAYOUT") == {"columns": [1, 2]}

    system_config_set(key="MAX_ITEMS", value=50, value_type="int")
    assert get_system_config("MAX_ITEMS") == 50
    assert config.MAX_ITEMS == 50

    system_config_delete(key="MAX_ITEMS")
    assert get_system_config("MAX_ITEMS") == 20
    assert config.MAX_ITEMS == 20


def test_a_mutable_default_cannot_be_altered_by_a_caller(schema: dict[str, Any]) -> None:
    get_system_config("LAYOUT")["columns"].append(3)
    assert get_system_config("LAYOUT") == {"columns": [1, 2]}


def test_declared_default_wins_over_a_call_site_default_which_serves_undeclared_keys(
    schema: dict[str, Any],
) -> None:
    assert get_system_config("SITE_NAME", default="other") == "Example"
    assert get_system_config("UNDECLARED", default="other") == "other"
    with pytest.raises(ConfigKeyError, match="UNDECLARED"):
        get_system_config("UNDECLARED")


def test_config_attribute_access(schema: dict[str, Any], declared: None) -> None:
    assert config.SITE_NAME == "Example"
    assert config.APP_COLOR == "blue"
    system_config_set(key="SITE_NAME", value="Mine")
    assert config.SITE_NAME == "Mine"
    with pytest.raises(AttributeError, match="NOPE"):
        _ = config.NOPE
    assert getattr(config, "NOPE", 5) == 5
    assert "SITE_NAME" in dir(config)
    with pytest.raises(AttributeError):
        config.SITE_NAME = "x"  # type: ignore[misc]


def test_declare_registers_and_schema_wins_over_it(settings: Any, declared: None) -> None:
    assert declaration_get("APP_COLOR").default == "blue"  # type: ignore[union-attr]
    settings.CONFIGSYNC_SCHEMA = {"APP_COLOR": {"default": "green"}}
    lookup_cache.invalidate_local()
    assert get_system_config("APP_COLOR") == "green"
    assert set(declarations()) >= {"APP_COLOR"}


def test_declared_without_default_raises_as_undeclared(settings: Any) -> None:
    settings.CONFIGSYNC_SCHEMA = {"NO_DEFAULT": {"type": "int"}}
    with pytest.raises(ConfigKeyError):
        get_system_config("NO_DEFAULT")
    assert get_system_config("NO_DEFAULT", default=3) == 3


def test_choices_and_validators_are_checked(settings: Any) -> None:
    decl = declaration_get("APP_COLOR")
    assert decl is None
    declaration = declare(
        "APP_PORT", type="int", default=80, validators=["tests.lookup.test_declared.positive"]
    )
    try:
        declaration.validate(8080)
        with pytest.raises(ValidationError, match="positive"):
            declaration.validate(-1)
    finally:
        undeclare("APP_PORT")


def positive(value: int) -> None:
    if value <= 0:
        raise ValidationError("must be positive")


# --- checks -----------------------------------------------------------------------------------


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [str(m.id) for m in messages]


def test_a_default_that_does_not_parse_is_an_error_naming_the_key(settings: Any) -> None:
    settings.CONFIGSYNC_SCHEMA = {
        "GOOD": {"type": "int", "default": "3"},
        "BAD_INT": {"type": "int", "default": "many"},
        "BAD_URL": {"type": "url", "default": "not a url"},
        "BAD_TYPE": {"type": "yaml", "default": "x"},
        "BAD_CHOICE": {"type": "str", "default": "c", "choices": ["a", "b"]},
        "BAD_VALIDATOR": {"type": "str", "default": "x", "validators": ["no.such.thing"]},
    }
    errors = check_declared_settings()
    assert ids(errors) == ["configsync.E050"] * 5
    text = " ".join(str(e.msg) for e in errors)
    for key in ("BAD_INT", "BAD_URL", "BAD_TYPE", "BAD_CHOICE", "BAD_VALIDATOR"):
        assert key in text
    assert "GOOD" not in text
    with pytest.raises(ImproperlyConfigured, match="BAD_INT"):
        get_system_config("BAD_INT")


def test_a_malformed_schema_is_e051(settings: Any) -> None:
    settings.CONFIGSYNC_SCHEMA = {"K": {"typo": "int"}}
    errors = check_declared_settings()
    assert ids(errors) == ["configsync.E051"] and "typo" in str(errors[0].msg)


def test_no_error_for_a_good_schema(schema: dict[str, Any]) -> None:
    assert check_declared_settings() == []


def test_a_stored_value_that_no_longer_parses_is_a_warning_naming_the_key(
    settings: Any, canary: str
) -> None:
    system_config_set(key="LIMIT", value="lots", value_type="str")
    system_config_set(key="RATIO", value="0.5", value_type="str")
    system_config_set(key="API_TOKEN", value=canary, is_sensitive=True)
    settings.CONFIGSYNC_SCHEMA = {
        "LIMIT": {"type": "int", "default": 1},
        "RATIO": {"type": "float", "default": 1.0},
        "API_TOKEN": {"type": "int", "sensitive": True},
    }
    warnings = check_stored_declared_values(databases=["default"])
    assert ids(warnings) == ["configsync.W050", "configsync.W050"]
    text = " ".join(str(w.msg) for w in warnings)
    assert "LIMIT" in text and "API_TOKEN" in text and "RATIO" not in text
    assert canary not in text and "lots" not in text
    assert check_stored_declared_values(databases=None) == []


def test_declared_choices_hold_at_every_edge_not_only_the_admin(settings: Any) -> None:
    settings.CONFIGSYNC_SCHEMA = {
        "THEME_X": {"type": "str", "default": "light", "choices": ["light", "dark"]}
    }
    with pytest.raises(ValidationError):
        system_config_set(key="THEME_X", value="purple")
    system_config_set(key="THEME_X", value="dark")
