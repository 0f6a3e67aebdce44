"""Errors that configsync's public API raises."""

from __future__ import annotations

from configsync.crypto.errors import ConfigsyncError, DecryptionError, KeyringError


class ConfigKeyError(KeyError, ConfigsyncError):
    """A configuration record does not exist. ``str()`` names it; ``.key`` holds the name."""

    def __init__(self, key: str, *, kind: str = "system setting") -> None:
        self.key = key
        self.kind = kind
        super().__init__(key)

    def __str__(self) -> str:
        return f"no {self.kind} named {self.key!r}"


__all__ = ["ConfigKeyError", "ConfigsyncError", "DecryptionError", "KeyringError"]
