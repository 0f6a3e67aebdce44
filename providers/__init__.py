"""AI provider configuration: ``get_ai_config`` reads a provider's typed, decrypted settings."""

from typing import Any

__all__ = ["get_ai_config"]


def get_ai_config(name: str, field: str | None = None) -> Any:
    """Return provider ``name``'s settings as a dict, or one ``field`` of them (cached, typed)."""
    from providers.selectors import ai_config_get

    return ai_config_get(name=name, field=field)
