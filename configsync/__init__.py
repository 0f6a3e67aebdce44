"""configsync: critical configuration, encrypted at rest and identical on every node.

The public Python API is what ``__all__`` lists; everything else is internal.
"""

from __future__ import annotations

from typing import Any

from configsync.exceptions import ConfigKeyError, ConfigsyncError, DecryptionError, KeyringError
from configsync.lookup import MISSING as _NOT_FOUND
from configsync.lookup import lookup_cache as _lookup_cache

__all__ = [
    "ConfigKeyError",
    "ConfigsyncError",
    "DecryptionError",
    "KeyringError",
    "get_system_config",
]

_MISSING: Any = object()


def get_system_config(key: str, default: Any = _MISSING) -> Any:
    """The typed, decrypted value of setting ``key``, from this process's lookup cache.

    Returns ``default`` when the key does not exist and a default was given; raises
    ``ConfigKeyError`` (a ``KeyError``) naming the key otherwise. A warm lookup costs about a
    dictionary lookup; a change committed anywhere is seen within a second (``configsync.lookup``).
    """
    value = _lookup_cache.get("system", key, _load_system_config)
    if value is _NOT_FOUND:
        if default is _MISSING:
            raise ConfigKeyError(key)
        return default
    return value


def _load_system_config(key: Any) -> Any:
    from configsync.selectors.system_config import system_config_get

    try:
        return system_config_get(key=key).typed_value()
    except ConfigKeyError:
        return _NOT_FOUND
