"""AI provider configuration: ``get_ai_config`` reads a provider's typed, decrypted settings."""

from typing import Any

__all__ = ["client_settings", "get_ai_config"]


def get_ai_config(name: str | None = None, field: str | None = None) -> Any:
    """Provider ``name``'s effective settings as a dict, or one ``field`` of them; without
    ``name``, the default provider's (``get_ai_config()``, ``get_ai_config(field="api_key")``).

    Served from the in-process lookup cache (``configsync.lookup``), invalidated in every process
    within a second of a change. ``ConfigKeyError`` (a ``KeyError``) names a missing provider or
    field, and says so when no provider is the default. (A disabled provider cannot be the
    default: ``providers.services.ai_provider_set`` refuses it.)
    """
    from providers.lookup import ai_config_cached

    return ai_config_cached(name=name, field=field)


def client_settings(name: str) -> dict[str, Any]:
    """Keyword arguments for provider ``name``'s official SDK client: ``openai.OpenAI(**kw)``.

    ``ProviderDisabled`` when the provider is disabled; ``ConfigKeyError`` when it does not exist.
    """
    from providers.client import client_settings as _client_settings

    return _client_settings(name)
