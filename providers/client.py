"""SDK keyword arguments for a provider, and the "test connection" check.

``client_settings(name)`` maps a provider's effective settings to the keyword arguments of its
official SDK client (``openai.OpenAI``, ``anthropic.Anthropic``, ``google.genai.Client``,
``openai.AzureOpenAI``, ``ollama.Client``) as declared by ``sdk_kwargs`` in the registry.

``provider_test_connection`` calls the provider's model-list endpoint with ``requests`` and a short
timeout (no SDK is needed for one GET) and reports success or the reason. The API key travels only
in a request header and never appears in the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from configsync.crypto.errors import ConfigsyncError
from providers.lookup import ai_config_cached
from providers.registry import kind_get

DEFAULT_TIMEOUT_SECONDS = 5.0


class ProviderDisabled(ConfigsyncError):
    """The provider is disabled: no client is built for it. ``str()`` says which and what to do."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"AI provider {name!r} is disabled: enable it (admin, API, or "
            f"'configsync provider set {name} --enable') before building a client for it"
        )


def client_settings(name: str) -> dict[str, Any]:
    """Keyword arguments for provider ``name``'s official SDK client (empty values omitted).

    ``ConfigKeyError`` when the provider does not exist; :class:`ProviderDisabled` when it is
    disabled.
    """
    data = ai_config_cached(name=name)
    if not data.get("enabled", True):
        raise ProviderDisabled(name)
    spec = kind_get(data["kind"])
    return {sdk: data[ours] for ours, sdk in spec.sdk_kwargs.items() if data.get(ours)}


@dataclass(frozen=True)
class ConnectionResult:
    """The outcome of a connection test: ``ok`` and a human-readable ``detail`` (no secrets)."""

    ok: bool
    detail: str
    status_code: int | None = None


def provider_test_connection(
    *, name: str, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> ConnectionResult:
    """GET provider ``name``'s model list; success, or the reason it failed (never the key)."""
    data = ai_config_cached(name=name)
    url, headers, params = kind_get(data["kind"]).models_endpoint.request(data)
    try:
        response = requests.get(
            url, headers=headers, params=params, timeout=timeout, allow_redirects=False
        )
    except requests.Timeout:
        return ConnectionResult(False, f"No answer within {timeout:g} s.")
    except requests.RequestException as exc:
        return ConnectionResult(False, f"Could not connect ({type(exc).__name__}).")
    code = response.status_code
    if code in (401, 403):
        return ConnectionResult(False, f"Rejected the credentials (HTTP {code}).", code)
    if code >= 400:
        return ConnectionResult(False, f"Answered HTTP {code}.", code)
    try:
        body = response.json()
    except ValueError:
        return ConnectionResult(False, f"Answered HTTP {code} without JSON.", code)
    count = _model_count(body)
    suffix = f"; {count} models listed" if count is not None else ""
    return ConnectionResult(True, f"Connected (HTTP {code}{suffix}).", code)


def _model_count(body: Any) -> int | None:
    if isinstance(body, dict):
        for field in ("data", "models"):
            if isinstance(body.get(field), list):
                return len(body[field])
    return None


def admin_test_connection(modeladmin: Any, request: Any, queryset: Any) -> None:
    """Admin action: test the selected providers' connections and report each as a message."""
    from django.contrib import messages

    for name in queryset.values_list("name", flat=True):
        result = provider_test_connection(name=name)
        level = messages.SUCCESS if result.ok else messages.ERROR
        modeladmin.message_user(request, f"{name}: {result.detail}", level)


admin_test_connection.short_description = "Test connection (list the provider's models)"  # type: ignore[attr-defined]
