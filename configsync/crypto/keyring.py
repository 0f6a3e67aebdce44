"""AES-256-GCM keyring read from ``CONFIGSYNC_ENCRYPTION_KEYS``.

A key is 32 random bytes written as unpadded base64url (``configsync keys generate`` prints one).
Its key id is derived from the key itself (first 12 hex digits of a domain-separated SHA-256), so
there is nothing else to configure or to get out of step. The first key encrypts; every key
decrypts. Keys are never derived from ``SECRET_KEY``.

Token format (what the database column holds)::

    enc1:<key id>:<base64url(12-byte nonce || ciphertext || 16-byte tag)>

The associated data binds a token to its version, key id and the caller's context (model, field
and natural key of the record), so a token copied onto another row or field fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from configsync.conf import app_settings
from configsync.crypto.errors import KeyringError

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "enc1"
KEY_BYTES = 32
NONCE_BYTES = 12


class TokenError(ValueError):
    """A token is malformed, uses an unknown key, or fails authentication (reason in ``str``)."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id_for(material: bytes) -> str:
    """Stable public id of a key: reveals nothing usable about the key itself."""
    return hashlib.sha256(b"configsync-key-id\x00" + material).hexdigest()[:12]


@dataclass(frozen=True)
class Key:
    """One AES-256 key and its id. ``repr`` never shows the material."""

    kid: str
    material: bytes = field(repr=False)


def generate_key() -> str:
    """Return a new random key in the form ``CONFIGSYNC_ENCRYPTION_KEYS`` accepts."""
    return _b64encode(secrets.token_bytes(KEY_BYTES))


def parse_key(text: str) -> Key:
    """Parse one configured key; raise ``KeyringError`` with a reason that never echoes it."""
    text = text.strip()
    try:
        material = _b64decode(text)
    except (binascii.Error, ValueError):
        raise KeyringError("a key in CONFIGSYNC_ENCRYPTION_KEYS is not base64url") from None
    if len(material) != KEY_BYTES or _b64encode(material) != text:
        raise KeyringError(
            f"a key in CONFIGSYNC_ENCRYPTION_KEYS is not {KEY_BYTES} bytes of unpadded base64url "
            "(generate one with `python manage.py configsync keys generate`)"
        )
    return Key(kid=key_id_for(material), material=material)


def key_text_problems(texts: list[str]) -> list[tuple[str, str]]:
    """What is wrong with the configured keys (blank entries ignored), never echoing a key.

    ``(check id, one-line message)`` pairs: ``configsync.E002`` for each malformed entry (named by
    position), ``configsync.E003`` when one key is listed twice. The system checks report them
    all; :func:`validate_key_texts` stops at the first.
    """
    problems: list[tuple[str, str]] = []
    kids: list[str] = []
    for position, text in enumerate((t for t in texts if t.strip()), start=1):
        try:
            kids.append(parse_key(text).kid)
        except KeyringError as exc:
            problems.append(
                (
                    "configsync.E002",
                    f"CONFIGSYNC_ENCRYPTION_KEYS entry {position} is malformed: {exc}",
                )
            )
    if len(set(kids)) != len(kids):
        problems.append(("configsync.E003", "CONFIGSYNC_ENCRYPTION_KEYS lists the same key twice."))
    return problems


def validate_key_texts(texts: list[str]) -> None:
    """Check configured keys before Django starts (``settings.production`` calls it).

    Raises ``ImproperlyConfigured`` with one line naming ``CONFIGSYNC_ENCRYPTION_KEYS``: none set,
    one malformed (by position, never echoing it) or the same key twice.
    """
    from django.core.exceptions import ImproperlyConfigured

    if not any(text.strip() for text in texts):
        raise ImproperlyConfigured(
            "CONFIGSYNC_ENCRYPTION_KEYS is empty: set it to a key printed by "
            "`python manage.py configsync keys generate`"
        )
    problems = key_text_problems(texts)
    if problems:
        raise ImproperlyConfigured(problems[0][1])


class Keyring:
    """The ordered set of keys: ``primary`` encrypts, any known key decrypts."""

    def __init__(self, keys: list[Key]) -> None:
        if not keys:
            raise KeyringError("no encryption key: set CONFIGSYNC_ENCRYPTION_KEYS")
        self.keys = list(keys)
        self.primary = keys[0]
        # One AEAD object per key, made once: building one per token costs as much as the
        # encryption itself (key rotation handles tens of thousands of tokens a second).
        self._aead = {key.kid: AESGCM(key.material) for key in keys}
        self.development_key_file: Path | None = None
        """Set when this keyring is the generated development key (see :func:`get_keyring`)."""

    def __contains__(self, kid: object) -> bool:
        return kid in self._aead

    @staticmethod
    def _aad(kid: str, context: str) -> bytes:
        return f"{TOKEN_PREFIX}|{kid}|{context}".encode()

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` with the primary key, bound to ``context``."""
        if self.development_key_file is not None:
            _development_key_notice(self.development_key_file)
        key = self.primary
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[key.kid].encrypt(nonce, plaintext.encode(), self._aad(key.kid, context))
        return f"{TOKEN_PREFIX}:{key.kid}:{_b64encode(nonce + sealed)}"

    def decrypt(self, token: str, *, context: str) -> str:
        """Decrypt ``token`` made for ``context``; raise ``TokenError`` with a reason otherwise."""
        kid = token_key_id(token)
        aead = self._aead.get(kid)
        if aead is None:
            raise TokenError(f"unknown key id {kid!r} (not in CONFIGSYNC_ENCRYPTION_KEYS)")
        try:
            blob = _b64decode(token.split(":", 2)[2])
        except (binascii.Error, ValueError):
            raise TokenError("ciphertext is not base64url") from None
        if len(blob) < NONCE_BYTES + 16:
            raise TokenError("ciphertext is truncated")
        try:
            plain = aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._aad(kid, context))
        except InvalidTag:
            raise TokenError(
                "authentication failed (tampered, or copied from another record or field)"
            ) from None
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise TokenError("plaintext is not UTF-8") from None


def is_token(value: object) -> bool:
    """True when ``value`` has the shape of a ciphertext token."""
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX + ":") and value.count(":") >= 2


def token_key_id(token: str) -> str:
    """The key id a token was made with; ``TokenError`` when it is not a token."""
    if not is_token(token):
        raise TokenError("not a configsync ciphertext")
    return token.split(":", 2)[1]


def _dev_key(path: Path) -> str:
    """Load the development key, generating it once (mode 0600) when it does not exist.

    web, worker and beat start together and may all get here at once: the key is written to a
    private temporary file and then hard-linked into place, so exactly one process creates it and
    every process reads a complete file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(generate_key() + "\n")
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process won the race; use its key
            else:
                _development_key_notice(path, generated=True)
        finally:
            temporary.unlink(missing_ok=True)
    text = path.read_text().strip()
    if not text:
        raise KeyringError(f"the development key file {path} is empty; delete it to regenerate")
    return text


_notice_given = False


def _development_key_notice(path: Path, *, generated: bool = False) -> None:
    """The development-key warning: one line, at most once per process, and only where it
    helps: when the key is generated (always: that happens once per ``CONFIGSYNC_VAR_DIR``),
    else when this process first encrypts a value with it, i.e. a secret is being protected by
    a key that is not for production. Building the keyring or decrypting says nothing: every
    management command's system checks do both (W001 is shown by ``runserver``, ``migrate``
    and ``check``)."""
    global _notice_given
    if _notice_given and not generated:
        return
    _notice_given = True
    what = "generated a development key into" if generated else "using the development key in"
    logger.warning(
        "No CONFIGSYNC_ENCRYPTION_KEYS set: %s %s (not for production; back it up or the "
        "values encrypted with it are lost)",
        what,
        path,
    )


def configured_key_texts() -> list[str]:
    """The configured keys as text; with DEBUG on and none set, the development key."""
    texts = [text for text in app_settings.ENCRYPTION_KEYS if text.strip()]
    if texts:
        return texts
    dev_file = app_settings.DEV_KEY_FILE
    if settings.DEBUG and dev_file:
        return [_dev_key(Path(dev_file))]
    return []


_lock = threading.Lock()
_cached: Keyring | None = None


def get_keyring() -> Keyring:
    """The process-wide keyring, built once from settings; ``KeyringError`` when unusable."""
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                keyring = Keyring([parse_key(text) for text in configured_key_texts()])
                if not [text for text in app_settings.ENCRYPTION_KEYS if text.strip()]:
                    keyring.development_key_file = Path(app_settings.DEV_KEY_FILE)
                _cached = keyring
    return _cached


def keyring_built() -> Keyring | None:
    """The keyring :func:`get_keyring` built and keeps (``None``: none yet, or reset since),
    without building one: its identity tells whether the keys may have changed."""
    return _cached


def reset_keyring() -> None:
    """Forget the cached keyring (settings changed, or a test swapped keys)."""
    global _cached
    with _lock:
        _cached = None


def keyring_on_setting_changed(*, setting: str, **kwargs: object) -> None:
    """``setting_changed`` receiver (``configsync.crypto.receivers``): a key setting moved."""
    if setting in {"CONFIGSYNC_ENCRYPTION_KEYS", "CONFIGSYNC_DEV_KEY_FILE", "DEBUG"}:
        reset_keyring()
