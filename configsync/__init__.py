"""configsync: critical configuration, encrypted at rest and identical on every node.

The public Python API is what ``__all__`` lists; everything else is internal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db import models

from configsync.exceptions import ConfigKeyError, ConfigsyncError, DecryptionError, KeyringError
from configsync.lookup import MISSING as _NOT_FOUND
from configsync.lookup import lookup_cache as _lookup_cache

__all__ = [
    "ConfigKeyError",
    "ConfigsyncError",
    "DecryptionError",
    "KeyringError",
    "get_system_config",
    "replicate",
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


def replicate(
    model: type[models.Model],
    *,
    natural_key: str,
    data_type: str,
    critical: bool = False,
    exclude: Iterable[str] = (),
) -> None:
    """Replicate ``model`` between nodes, as the row ``data_type`` of the strategy matrix.

    Call it from your app's ``AppConfig.ready()``::

        configsync.replicate(Template, natural_key="slug", data_type="templates")

    ``natural_key``: a unique field naming a row identically on every node (never the auto id);
    ``data_type``: a lower-case identifier (several models may share one), the key of
    ``CONFIGSYNC_SYNC_STRATEGIES`` and of ``configsync mode show``; ``critical``: synced
    full-duplex in every mode but ``LOCAL_ONLY`` (else: full-duplex with an external peer,
    backup only to a bucket); ``exclude``: fields that stay local. Every local write then
    enters the change feed and travels as the matrix says. ``ValueError`` for a natural key
    that is not a unique field of the model or a bad data type; nothing is registered then.
    """
    from django.core.exceptions import FieldDoesNotExist

    from configsync.replication import registry

    try:
        field = model._meta.get_field(natural_key)
    except FieldDoesNotExist:
        raise ValueError(f"{model._meta.label} has no field {natural_key!r}") from None
    if not getattr(field, "unique", False) or getattr(field, "primary_key", False):
        raise ValueError(
            f"{model._meta.label}.{natural_key} must be a unique field other than the primary key"
        )
    registry.register(
        model._meta.label_lower,
        natural_key_field=natural_key,
        exclude=exclude,
        data_type=data_type,
        critical=critical,
    )
