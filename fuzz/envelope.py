"""atheris harness: the ciphertext envelope (``configsync/crypto/keyring.py``: tokens
``enc1:<key id>:<base64url>`` and configured keys).

Decrypting any text answers the plaintext or ``TokenError``; a token made from the input's text
decrypts back to it; parsing a configured key answers a key or ``KeyringError``.
"""

from __future__ import annotations

import sys

import _harness
import atheris

with atheris.instrument_imports(include=["configsync.crypto"]):
    _harness.setup()
    from configsync.crypto.errors import KeyringError
    from configsync.crypto.keyring import TokenError, get_keyring, parse_key, token_key_id

CONTEXT = "configsync.systemconfig.secret_value:FUZZ"


def one_input(data: bytes) -> None:
    keyring = get_keyring()
    provider = atheris.FuzzedDataProvider(data)
    text = provider.ConsumeUnicodeNoSurrogates(len(data))
    for token in (text, f"enc1:{keyring.primary.kid}:{text}"):
        try:
            token_key_id(token)
            keyring.decrypt(token, context=CONTEXT)
        except TokenError:
            pass
    sealed = keyring.encrypt(text, context=CONTEXT)
    assert keyring.decrypt(sealed, context=CONTEXT) == text
    try:
        parse_key(text)
    except KeyringError as exc:
        assert len(text.strip()) < 8 or text.strip() not in str(exc)


if __name__ == "__main__":
    _harness.run("envelope", one_input)
    sys.exit(0)
