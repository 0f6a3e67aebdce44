"""Fuzzed ciphertext envelopes (``configsync/crypto``: the ``enc1:<key id>:<base64url>`` token,
configured keys) and the field that decrypts stored tokens.

Properties: decrypting any text answers the plaintext or ``TokenError``; a valid token mutated a
little is refused or still reads as its own plaintext (base64url's spare bits), never as another
value; any text encrypts and decrypts back (round trip) and only under its own context; parsing
any configured key answers a key or ``KeyringError``; a row holding any token text raises only
``DecryptionError`` when its value is read, and the wire's token check only ``ValidationError``.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from hypothesis import given
from hypothesis import strategies as st

from configsync.crypto.errors import DecryptionError, KeyringError
from configsync.crypto.fields import Ciphertext, encryption_context_for
from configsync.crypto.keyring import (
    TOKEN_PREFIX,
    Key,
    TokenError,
    generate_key,
    get_keyring,
    is_token,
    parse_key,
    token_key_id,
)
from configsync.models import SystemConfig
from configsync.validation import token_plaintext
from tests.fuzz.strategies import FUZZ, HOSTILE, TEXT, mutated

CONTEXT = encryption_context_for(
    model_label="configsync.systemconfig", field_name="secret_value", natural_key="K"
)
B64 = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=80)


def encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


PLAINTEXTS = st.one_of(TEXT, st.text(max_size=200)).filter(encodable)


def tokens() -> st.SearchStrategy[str]:
    """Garbage, token-shaped garbage and valid tokens mutated a little."""
    keyring = get_keyring()
    valid = PLAINTEXTS.map(lambda text: keyring.encrypt(text, context=CONTEXT))
    kid = keyring.primary.kid
    return st.one_of(
        TEXT,
        st.builds(lambda k, b: f"{TOKEN_PREFIX}:{k}:{b}", st.one_of(st.just(kid), TEXT), B64),
        st.builds(
            lambda b: f"{TOKEN_PREFIX}:{kid}:{b}", st.lists(st.one_of(B64, HOSTILE)).map("".join)
        ),
        valid.flatmap(lambda token: mutated([token]).map(lambda v: _text(v, token))),
    )


def _text(value: object, fallback: str) -> str:
    inner = value[0] if isinstance(value, list) and value else value
    return inner if isinstance(inner, str) else fallback


@FUZZ
@given(text=PLAINTEXTS, context=TEXT.filter(encodable))
def test_any_text_encrypts_and_decrypts_back_only_in_its_own_context(
    text: str, context: str
) -> None:
    keyring = get_keyring()
    token = keyring.encrypt(text, context=context)
    assert is_token(token) and token_key_id(token) == keyring.primary.kid
    assert keyring.decrypt(token, context=context) == text
    with pytest.raises(TokenError):
        keyring.decrypt(token, context=context + "x")


@FUZZ
@given(data=st.data())
def test_any_token_decrypts_or_is_refused_with_token_error(data: st.DataObject) -> None:
    keyring = get_keyring()
    original = data.draw(PLAINTEXTS)
    valid = keyring.encrypt(original, context=CONTEXT)
    derived = data.draw(st.booleans())
    token = data.draw(mutated([valid]).map(lambda v: _text(v, valid)) if derived else tokens())
    try:
        kid = token_key_id(token)
    except TokenError:
        assert not is_token(token)
        kid = None
    try:
        plain = keyring.decrypt(token, context=CONTEXT)
    except TokenError as exc:
        assert len(original) < 8 or original not in str(exc)
        return
    assert kid in keyring
    if derived:
        # Only the spare bits of the last base64url character may differ: the same blob.
        assert plain == original


@FUZZ
@given(text=st.one_of(TEXT, B64, st.just(generate_key()), st.just(generate_key() + "=")))
def test_any_configured_key_parses_or_is_refused_with_keyring_error(text: str) -> None:
    try:
        key = parse_key(text)
    except KeyringError as exc:
        assert len(text.strip()) < 8 or text.strip() not in str(exc)
        return
    assert isinstance(key, Key) and len(key.material) == 32
    assert parse_key(text.strip()) == key


@pytest.mark.django_db
@FUZZ
@given(token=tokens())
def test_a_stored_token_reads_back_or_raises_decryption_error(token: str) -> None:
    with transaction.atomic():
        row = SystemConfig.objects.create(key="K", is_sensitive=True)
        if "\x00" not in token and encodable(token):  # what a database can hold at all
            table = connection.ops.quote_name(SystemConfig._meta.db_table)
            with connection.cursor() as cursor:  # a damaged row: no field, no check
                cursor.execute(
                    f"UPDATE {table} SET secret_value = %s WHERE id = %s",
                    [token, row.pk],
                )
        loaded = SystemConfig.objects.get(pk=row.pk)
        try:
            value = loaded.secret_value
        except DecryptionError as exc:
            assert exc.field == "secret_value"
            assert len(token) < 8 or token not in str(exc)
        else:
            assert value is None or type(value) is str
        transaction.set_rollback(True)
    received = SystemConfig(key="K", is_sensitive=True)
    received.__dict__["secret_value"] = Ciphertext(token)
    try:
        token_plaintext(received, "secret_value")
    except ValidationError as exc:
        assert len(token) < 8 or token not in str(exc)
