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
from configsync.schema import declare

__all__ = [
    "ConfigKeyError",
    "ConfigsyncError",
    "DecryptionError",
    "KeyringError",
    "config",
    "declare",
    "get_system_config",
    "replicate",
]

_MISSING: Any = object()


def get_system_config(key: str, default: Any = _MISSING) -> Any:
    """The typed, decrypted value of setting ``key``, from this process's lookup cache.

    When no value is stored: the declared default of a declared key (``configsync.schema``:
    ``CONFIGSYNC_SCHEMA`` or ``configsync.declare``) — the declaration is the one source of a
    default, so it wins over a call-site ``default``; else ``default`` when given; else
    ``ConfigKeyError`` (a ``KeyError``) naming the key. ``ImproperlyConfigured`` naming the key
    when its declared default does not parse as its type (the system check E050 says so at
    start-up). A warm lookup costs about a dictionary lookup; a change committed anywhere is seen
    within a second (``configsync.lookup``).
    """
    value = _lookup_cache.get("system", key, _load_system_config)
    if value is _NOT_FOUND:
        return _declared_default(key, default)
    return value


def _declared_default(key: str, default: Any) -> Any:
    from django.core.exceptions import ImproperlyConfigured, ValidationError

    from configsync.schema import declaration_get

    declaration = declaration_get(key)
    if declaration is not None and declaration.has_default:
        try:
            return declaration.default_value()
        except ValidationError:
            raise ImproperlyConfigured(
                f"The declared default of {key} does not parse as {declaration.value_type} "
                "(configsync.E050)."
            ) from None
    if default is _MISSING:
        raise ConfigKeyError(key)
    return default


class _Config:
    """``config.KEY``: ``get_system_config("KEY")`` as an attribute, in the manner of
    django-constance. A key neither stored nor declared with a default is an ``AttributeError``
    naming it (so ``getattr(config, "KEY", fallback)`` and ``hasattr`` work). Read-only."""

    __slots__ = ()

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return get_system_config(key)
        except ConfigKeyError:
            raise AttributeError(f"configsync has no setting {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(
            "config is read-only: use configsync.services.system_config.system_config_set"
        )

    def __dir__(self) -> list[str]:
        from configsync.schema import declarations

        return sorted(declarations())

    def __repr__(self) -> str:
        return "<configsync.config>"


config = _Config()
"""Attribute access to the settings (``from configsync import config; config.SITE_NAME``)."""


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
