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


def ai_config_cached(*, name: str, field: str | None = None) -> Any:
    """Provider ``name``'s effective settings (kind defaults filled in) or one ``field``.

    ``ConfigKeyError`` naming the provider (or ``name.field``) when it does not exist.
    """
    data = lookup_cache.get("provider", name, _load)
    if data is MISSING:
        raise ConfigKeyError(name, kind="AI provider")
    if field is None:
        return data
    if field not in data:
        raise ConfigKeyError(f"{name}.{field}", kind="AI provider field")
    return data[field]
