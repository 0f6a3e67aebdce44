"""Cached reads of AI provider settings behind ``providers.get_ai_config`` (configsync.lookup)."""

from __future__ import annotations

from typing import Any

from configsync.exceptions import ConfigKeyError
from configsync.lookup import MISSING, lookup_cache


def _load(name: Any) -> Any:
    from providers.registry import KINDS
    from providers.selectors import ai_config_get

    try:
        data: dict[str, Any] = ai_config_get(name=str(name))
    except ConfigKeyError:
        return MISSING
    spec = KINDS.get(data["kind"])
    if spec is not None:
        for field, default in spec.defaults.items():
            if not data.get(field):
                data[field] = default
    return data


def _load_default_name(_: Any) -> Any:
    from providers.models import AIProviderConfig

    name = AIProviderConfig.objects.filter(is_default=True).values_list("name", flat=True).first()
    return MISSING if name is None else name


def ai_default_name_cached() -> str:
    """The default provider's name (cached like the settings: every provider change clears it).

    ``ConfigKeyError`` when no provider is the default.
    """
    name = lookup_cache.get("provider-default", "", _load_default_name)
    if name is MISSING:
        raise ConfigKeyError("(default)", kind="default AI provider")
    return str(name)


def ai_config_cached(*, name: str | None = None, field: str | None = None) -> Any:
    """Provider ``name``'s effective settings (kind defaults filled in) or one ``field``; without
    ``name``, the default provider's.

    ``ConfigKeyError`` naming the provider (or ``name.field``) when it does not exist, or when no
    provider is the default.
    """
    if name is None:
        name = ai_default_name_cached()
    data = lookup_cache.get("provider", name, _load)
    if data is MISSING:
        raise ConfigKeyError(name, kind="AI provider")
    if field is None:
        return data
    if field not in data:
        raise ConfigKeyError(f"{name}.{field}", kind="AI provider field")
    return data[field]
