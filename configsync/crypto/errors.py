"""Typed errors of the encryption layer. None of them ever carries a plaintext or a ciphertext."""

from __future__ import annotations


class ConfigsyncError(Exception):
    """Base class of configsync's own errors."""


class KeyringError(ConfigsyncError):
    """The configured encryption keys are missing or malformed."""


class DecryptionError(ConfigsyncError):
    """A stored value could not be decrypted.

    It names the record and field (``record`` is the natural key) and the reason, never the
    ciphertext. Raised instead of ever returning ciphertext or garbage as if it were the value.
    """

    def __init__(self, *, model: str, field: str, record: str, reason: str) -> None:
        self.model = model
        self.field = field
        self.record = record
        self.reason = reason
        super().__init__(f"cannot decrypt {model}.{field} of record {record!r}: {reason}")
