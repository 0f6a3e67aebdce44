"""The keyring: key format, key ids, the development key and the key checks."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from configsync.checks import check_encryption_keys
from configsync.crypto.errors import KeyringError
from configsync.crypto.keyring import (
    Keyring,
    TokenError,
    generate_key,
    get_keyring,
    parse_key,
    token_key_id,
    validate_key_texts,
)


def test_generated_keys_parse_and_differ() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert parse_key(first).kid != parse_key(second).kid
    assert first not in repr(parse_key(first))


@pytest.mark.parametrize(
    "text",
    ["", "not base64 !!", "c2hvcnQ", generate_key() + "AA", generate_key() + "="],
    # Fixed ids: a random key in an id differs between pytest-xdist workers, which then refuse.
    ids=["empty", "not-base64", "too-short", "too-long", "bad-padding"],
)
def test_malformed_keys_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(KeyringError) as caught:
        parse_key(text)
    assert "CONFIGSYNC_ENCRYPTION_KEYS" in str(caught.value)
    if text.strip():
        assert text not in str(caught.value)


def test_first_key_encrypts_every_key_decrypts() -> None:
    old, new = parse_key(generate_key()), parse_key(generate_key())
    token = Keyring([old]).encrypt("sk-CANARY-x", context="m.f:k")
    both = Keyring([new, old])
    assert both.decrypt(token, context="m.f:k") == "sk-CANARY-x"
    assert token_key_id(both.encrypt("v", context="m.f:k")) == new.kid
    with pytest.raises(TokenError, match="unknown key id"):
        Keyring([new]).decrypt(token, context="m.f:k")
    with pytest.raises(TokenError, match="authentication failed"):
        both.decrypt(token, context="m.f:other")


def test_keys_are_never_derived_from_secret_key(settings) -> None:
    settings.DEBUG = False
    settings.CONFIGSYNC_ENCRYPTION_KEYS = []
    with pytest.raises(KeyringError, match="CONFIGSYNC_ENCRYPTION_KEYS"):
        get_keyring()


def test_development_key_is_generated_once_with_mode_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "var" / "dev-encryption.key"
    with override_settings(
        DEBUG=True, CONFIGSYNC_ENCRYPTION_KEYS=[], CONFIGSYNC_DEV_KEY_FILE=key_file
    ):
        with caplog.at_level(logging.WARNING):
            messages = check_encryption_keys()
            keyring = get_keyring()
        assert [m.id for m in messages] == ["configsync.W001"]
        assert key_file.is_file()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert "generated a development key" in caplog.text
        assert key_file.read_text().strip() not in caplog.text
        assert keyring.primary.kid == parse_key(key_file.read_text()).kid

    content = key_file.read_text()
    with override_settings(
        DEBUG=True, CONFIGSYNC_ENCRYPTION_KEYS=[], CONFIGSYNC_DEV_KEY_FILE=key_file
    ):
        assert get_keyring().primary.kid == keyring.primary.kid
    assert key_file.read_text() == content
    assert [p.name for p in key_file.parent.iterdir()] == ["dev-encryption.key"]


def test_checks_report_missing_malformed_and_duplicate_keys() -> None:
    with override_settings(DEBUG=False, CONFIGSYNC_ENCRYPTION_KEYS=[]):
        assert [m.id for m in check_encryption_keys()] == ["configsync.E001"]
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[generate_key(), "bad-key"]):
        messages = check_encryption_keys()
        assert [m.id for m in messages] == ["configsync.E002"]
        assert "entry 2" in messages[0].msg and "bad-key" not in messages[0].msg
    key = generate_key()
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[key, key]):
        assert [m.id for m in check_encryption_keys()] == ["configsync.E003"]
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[generate_key(), generate_key()]):
        assert check_encryption_keys() == []


def test_validate_key_texts_gives_one_line_naming_the_variable() -> None:
    for texts in ([], ["  "], ["nope"]):
        with pytest.raises(ImproperlyConfigured) as caught:
            validate_key_texts(texts)
        assert "CONFIGSYNC_ENCRYPTION_KEYS" in str(caught.value)
        assert "\n" not in str(caught.value)
    validate_key_texts([generate_key()])
