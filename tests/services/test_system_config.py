"""system_config_set / delete: typed values, validation that saves nothing, sensitivity moves."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from configsync import get_system_config
from configsync.exceptions import ConfigKeyError
from configsync.models import SystemConfig
from configsync.services.system_config import system_config_delete, system_config_set

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("value_type", "given", "stored", "typed"),
    [
        ("str", " padded ", " padded ", " padded "),
        ("int", "42", "42", 42),
        ("int", 7, "7", 7),
        ("float", "1.5", "1.5", 1.5),
        ("bool", "yes", "true", True),
        ("bool", False, "false", False),
        ("json", '{"b": 1, "a": [1, 2]}', '{"a":[1,2],"b":1}', {"a": [1, 2], "b": 1}),
        ("url", "postgres://db.internal:5432/app", "postgres://db.internal:5432/app", None),
    ],
)
def test_typed_values_round_trip(
    value_type: str, given: object, stored: str, typed: object
) -> None:
    system_config_set(key="SETTING", value=given, value_type=value_type)
    record = SystemConfig.objects.get(key="SETTING")
    assert record.value == stored
    assert get_system_config("SETTING") == (stored if typed is None else typed)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"value": "x", "value_type": "yaml"}, "value_type"),
        ({"value": "forty-two", "value_type": "int"}, "value"),
        ({"value": "1.2.3", "value_type": "float"}, "value"),
        ({"value": "maybe", "value_type": "bool"}, "value"),
        ({"value": "{not json", "value_type": "json"}, "value"),
        ({"value": "not a url", "value_type": "url"}, "value"),
        ({"value": "http://", "value_type": "url"}, "value"),
        ({"value": "x", "key": "has space"}, "key"),
        ({"value": "x", "key": ""}, "key"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_saved(arguments: dict, field: str) -> None:
    arguments = {"key": "BAD", **arguments}
    with pytest.raises(ValidationError) as caught:
        system_config_set(**arguments)
    assert field in caught.value.message_dict
    assert str(arguments["value"]) not in str(caught.value.message_dict) or field == "key"
    assert not SystemConfig.objects.exists()


def test_an_invalid_update_leaves_the_record_as_it_was() -> None:
    system_config_set(key="PORT", value=8000, value_type="int")
    with pytest.raises(ValidationError):
        system_config_set(key="PORT", value="eighty")
    with pytest.raises(ValidationError):
        system_config_set(key="PORT", value_type="bool")  # 8000 is no boolean
    assert get_system_config("PORT") == 8000


def test_sensitive_value_moves_between_plain_text_and_ciphertext(canary: str) -> None:
    system_config_set(key="TOKEN", value=canary)
    system_config_set(key="TOKEN", is_sensitive=True)  # value kept, now encrypted
    with connection.cursor() as cursor:
        cursor.execute("SELECT value, secret_value FROM configsync_systemconfig")
        value, secret = cursor.fetchone()
    assert value == "" and canary not in secret
    assert get_system_config("TOKEN") == canary

    system_config_set(key="TOKEN", value="sk-CANARY-new")  # stays sensitive when not told
    assert SystemConfig.objects.get(key="TOKEN").is_sensitive
    system_config_set(key="TOKEN", is_sensitive=False, allow_reveal=True, actor="test")
    record = SystemConfig.objects.get(key="TOKEN")
    assert record.value == "sk-CANARY-new" and record.secret_value is None


def test_updating_only_metadata_keeps_the_ciphertext(canary: str) -> None:
    system_config_set(key="TOKEN", value=canary, is_sensitive=True)
    before = SystemConfig.objects.values_list("secret_value", flat=True).get()
    system_config_set(key="TOKEN", description="The API token", category="security")
    record = SystemConfig.objects.get(key="TOKEN")
    assert str(record.__dict__["secret_value"]) == before
    assert (record.description, record.category) == ("The API token", "security")


def test_creating_without_a_value_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        system_config_set(key="NEW", description="no value")
    assert "value" in caught.value.message_dict


def test_delete_and_missing_keys() -> None:
    system_config_set(key="GONE", value="x")
    system_config_delete(key="GONE")
    with pytest.raises(ConfigKeyError) as caught:
        system_config_delete(key="GONE")
    assert "GONE" in str(caught.value)
    assert get_system_config("GONE", default="fallback") == "fallback"
