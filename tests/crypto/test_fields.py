"""The encrypted field against the real database: what is stored, and how tampering fails."""

from __future__ import annotations

import pytest
from django.core.exceptions import FieldError
from django.db import connection, models
from django.test import override_settings
from django.test.utils import isolate_apps

from configsync.crypto.errors import DecryptionError
from configsync.crypto.fields import EncryptedTextField
from configsync.crypto.keyring import generate_key
from configsync.models import SystemConfig
from configsync.services.system_config import system_config_set
from providers.models import AIProviderConfig
from providers.services import ai_provider_set

pytestmark = pytest.mark.django_db


def raw_column(table: str, column: str, where: str, param: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {where} = %s", [param])
        row = cursor.fetchone()
    return row[0]


def write_column(table: str, column: str, value: str | None, where: str, param: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {where} = %s", [value, param])


def fresh(key: str) -> SystemConfig:
    return SystemConfig.objects.get(key=key)


def test_raw_columns_never_hold_the_plaintext(canary: str) -> None:
    system_config_set(key="DB_PASSWORD", value=canary, is_sensitive=True)
    ai_provider_set(name="openai-main", kind="openai", api_key=canary)

    with connection.cursor() as cursor:
        cursor.execute("SELECT key, value, secret_value, description FROM configsync_systemconfig")
        setting_rows = cursor.fetchall()
        cursor.execute("SELECT * FROM providers_aiproviderconfig")
        provider_rows = cursor.fetchall()
    stored = repr(setting_rows) + repr(provider_rows)
    assert canary not in stored
    assert raw_column("configsync_systemconfig", "secret_value", "key", "DB_PASSWORD").startswith(
        "enc1:"
    )
    assert raw_column("providers_aiproviderconfig", "api_key", "name", "openai-main").startswith(
        "enc1:"
    )
    # ...and both still read back.
    assert fresh("DB_PASSWORD").typed_value() == canary
    assert AIProviderConfig.objects.get(name="openai-main").api_key == canary


def test_equal_plaintexts_get_different_ciphertexts(canary: str) -> None:
    system_config_set(key="A", value=canary, is_sensitive=True)
    system_config_set(key="B", value=canary, is_sensitive=True)
    a = raw_column("configsync_systemconfig", "secret_value", "key", "A")
    b = raw_column("configsync_systemconfig", "secret_value", "key", "B")
    assert a != b


def test_a_flipped_byte_raises_the_typed_error(canary: str) -> None:
    system_config_set(key="API_TOKEN", value=canary, is_sensitive=True)
    token = raw_column("configsync_systemconfig", "secret_value", "key", "API_TOKEN")
    prefix, body = token.rsplit(":", 1)
    position = len(body) // 2
    flipped = body[:position] + ("A" if body[position] != "A" else "B") + body[position + 1 :]
    write_column(
        "configsync_systemconfig", "secret_value", f"{prefix}:{flipped}", "key", "API_TOKEN"
    )

    record = fresh("API_TOKEN")
    with pytest.raises(DecryptionError) as caught:
        record.typed_value()
    error = caught.value
    assert (error.model, error.field, error.record) == (
        "configsync.systemconfig",
        "secret_value",
        "API_TOKEN",
    )
    assert "API_TOKEN" in str(error) and "secret_value" in str(error)
    assert canary not in str(error) and flipped not in str(error)


def test_a_ciphertext_swapped_between_rows_raises(canary: str) -> None:
    system_config_set(key="FIRST", value=canary, is_sensitive=True)
    system_config_set(key="SECOND", value="sk-CANARY-other", is_sensitive=True)
    first = raw_column("configsync_systemconfig", "secret_value", "key", "FIRST")
    second = raw_column("configsync_systemconfig", "secret_value", "key", "SECOND")
    write_column("configsync_systemconfig", "secret_value", second, "key", "FIRST")
    write_column("configsync_systemconfig", "secret_value", first, "key", "SECOND")

    for key in ("FIRST", "SECOND"):
        with pytest.raises(DecryptionError) as caught:
            fresh(key).typed_value()
        assert caught.value.record == key
        assert "authentication failed" in caught.value.reason


def test_a_ciphertext_copied_to_another_model_field_raises(canary: str) -> None:
    system_config_set(key="openai-main", value=canary, is_sensitive=True)
    ai_provider_set(name="openai-main", kind="openai", api_key="sk-CANARY-provider")
    token = raw_column("configsync_systemconfig", "secret_value", "key", "openai-main")
    write_column("providers_aiproviderconfig", "api_key", token, "name", "openai-main")

    with pytest.raises(DecryptionError) as caught:
        _ = AIProviderConfig.objects.get(name="openai-main").api_key
    assert (caught.value.model, caught.value.field) == ("providers.aiproviderconfig", "api_key")


def test_an_unknown_key_id_raises(canary: str) -> None:
    other_key = generate_key()
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[other_key]):
        system_config_set(key="FROM_ELSEWHERE", value=canary, is_sensitive=True)
        assert fresh("FROM_ELSEWHERE").typed_value() == canary

    record = fresh("FROM_ELSEWHERE")  # back on the suite's keys, which lack other_key
    with pytest.raises(DecryptionError) as caught:
        record.typed_value()
    assert "unknown key id" in caught.value.reason
    assert caught.value.record == "FROM_ELSEWHERE"


def test_a_value_that_is_not_a_token_raises(canary: str) -> None:
    system_config_set(key="PLAIN", value=canary, is_sensitive=True)
    write_column("configsync_systemconfig", "secret_value", canary, "key", "PLAIN")
    with pytest.raises(DecryptionError) as caught:
        fresh("PLAIN").typed_value()
    assert canary not in str(caught.value)


def test_the_field_refuses_lookups_but_isnull(canary: str) -> None:
    system_config_set(key="S", value=canary, is_sensitive=True)
    with pytest.raises(FieldError, match="encrypted"):
        list(SystemConfig.objects.filter(secret_value=canary))
    with pytest.raises(FieldError, match="encrypted"):
        list(SystemConfig.objects.filter(secret_value__startswith="sk-"))
    assert list(SystemConfig.objects.filter(secret_value__isnull=False)) == [fresh("S")]


def test_a_deferred_field_loads_the_token_not_plaintext(canary: str) -> None:
    system_config_set(key="DEFERRED", value=canary, is_sensitive=True)
    record = SystemConfig.objects.only("key", "is_sensitive", "value_type").get(key="DEFERRED")
    assert record.typed_value() == canary
    record.description = "changed"
    record.save(update_fields=["description"])
    assert fresh("DEFERRED").typed_value() == canary


def test_unchanged_secret_is_not_reencrypted_on_save(canary: str) -> None:
    system_config_set(key="STABLE", value=canary, is_sensitive=True)
    before = raw_column("configsync_systemconfig", "secret_value", "key", "STABLE")
    record = fresh("STABLE")
    record.category = "other"
    record.save()
    assert raw_column("configsync_systemconfig", "secret_value", "key", "STABLE") == before


@isolate_apps("configsync")
def test_unique_and_indexed_encrypted_fields_fail_the_checks() -> None:
    class Broken(models.Model):  # noqa: DJ008
        natural_key_field = "name"
        name = models.CharField(max_length=10)
        unique_secret = EncryptedTextField(unique=True)
        indexed_secret = EncryptedTextField(db_index=True)

        class Meta:
            app_label = "configsync"

    class NoNaturalKey(models.Model):  # noqa: DJ008
        secret = EncryptedTextField()

        class Meta:
            app_label = "configsync"

    broken_ids = {
        message.id
        for field_name in ("unique_secret", "indexed_secret")
        for message in Broken._meta.get_field(field_name).check()
    }
    assert broken_ids == {"configsync.E010"}
    assert "configsync.E011" in {m.id for m in NoNaturalKey._meta.get_field("secret").check()}


def test_refresh_from_db_copies_the_token_and_never_decrypts(canary: str) -> None:
    other_key = generate_key()
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[other_key]):
        system_config_set(key="RELAYED", value=canary, is_sensitive=True)
    token = raw_column("configsync_systemconfig", "secret_value", "key", "RELAYED")

    record = fresh("RELAYED")  # this node lacks other_key: it can hold and save, not read
    record.description = "stale"
    record.refresh_from_db()  # would decrypt (and fail) without the guard
    assert record.description == ""
    record.category = "relayed"
    record.save()
    assert raw_column("configsync_systemconfig", "secret_value", "key", "RELAYED") == token
    with pytest.raises(DecryptionError):
        record.typed_value()
