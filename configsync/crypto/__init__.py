"""Encryption at rest: the keyring, the encrypted model field and their errors."""

from configsync.crypto.errors import ConfigsyncError, DecryptionError, KeyringError
from configsync.crypto.fields import Ciphertext, EncryptedTextField
from configsync.crypto.keyring import Keyring, generate_key, get_keyring, reset_keyring

__all__ = [
    "Ciphertext",
    "ConfigsyncError",
    "DecryptionError",
    "EncryptedTextField",
    "Keyring",
    "KeyringError",
    "generate_key",
    "get_keyring",
    "reset_keyring",
]
