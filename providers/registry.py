"""The AI provider kinds: which fields each declares, their defaults and validation.

Each kind is a :class:`ProviderKind`; ``KINDS`` maps the stored ``kind`` value to it. Adding a
provider means adding one entry here: its fields, defaults, SDK keyword mapping
(``client_settings``) and model-list endpoint (the connection test).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

# Fields of AIProviderConfig that a kind may use besides name/kind/enabled/is_default.
OPTION_FIELDS = (
    "api_key",
    "base_url",
    "default_model",
    "organization",
    "endpoint",
    "api_version",
    "deployment",
)

# Option fields that hold a URL, validated whatever the kind.
URL_FIELDS = ("base_url", "endpoint")
_url_validator = URLValidator(schemes=["http", "https"])


@dataclass(frozen=True)
class ModelsEndpoint:
    """The provider's model-list endpoint, which the connection test ``GET``s.

    The URL is the record's ``url_field`` plus ``path``; the API key travels only in the header
    ``key_header`` (formatted by ``key_format``), never in the URL. ``field_headers`` and
    ``field_params`` map our fields to headers and query parameters sent when the field is set.
    """

    path: str
    url_field: str = "base_url"
    key_header: str = ""
    key_format: str = "{}"
    headers: Mapping[str, str] = field(default_factory=dict)
    field_headers: Mapping[str, str] = field(default_factory=dict)
    field_params: Mapping[str, str] = field(default_factory=dict)

    def request(self, data: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, str]]:
        """URL, headers and query parameters for the provider settings ``data``."""
        url = str(data.get(self.url_field) or "").rstrip("/") + self.path
        headers = dict(self.headers)
        if self.key_header:
            headers[self.key_header] = self.key_format.format(data.get("api_key") or "")
        headers.update({h: str(data[f]) for f, h in self.field_headers.items() if data.get(f)})
        params = {p: str(data[f]) for f, p in self.field_params.items() if data.get(f)}
        return url, headers, params


@dataclass(frozen=True)
class ProviderKind:
    """What one provider kind needs: required and allowed fields, defaults, SDK kwargs."""

    kind: str
    label: str
    required: tuple[str, ...]
    allowed: tuple[str, ...]
    models_endpoint: ModelsEndpoint
    """What the connection test calls."""
    defaults: Mapping[str, str] = field(default_factory=dict)
    sdk_kwargs: Mapping[str, str] = field(default_factory=dict)
    """Maps our field name to the keyword argument of the provider's official SDK client."""

    def validate(self, values: Mapping[str, Any]) -> None:
        """Raise ``ValidationError`` (per field) when ``values`` do not fit this kind."""
        errors: dict[str, str] = {}
        for name in self.required:
            if not values.get(name):
                errors[name] = f"Required for {self.label}."
        for name in OPTION_FIELDS:
            if name not in self.allowed and values.get(name):
                errors[name] = f"Not used by {self.label}; leave it empty."
        for name in URL_FIELDS:
            if values.get(name) and name not in errors:
                try:
                    _url_validator(str(values[name]))
                except ValidationError:
                    errors[name] = "Enter a valid http:// or https:// URL."
        if errors:
            raise ValidationError(errors)


KINDS: dict[str, ProviderKind] = {
    spec.kind: spec
    for spec in (
        ProviderKind(
            kind="openai",
            label="OpenAI",
            required=("api_key",),
            allowed=("api_key", "base_url", "default_model", "organization"),
            models_endpoint=ModelsEndpoint(
                "/models",
                key_header="Authorization",
                key_format="Bearer {}",
                field_headers={"organization": "OpenAI-Organization"},
            ),
            defaults={"base_url": "https://api.openai.com/v1", "default_model": "gpt-4o-mini"},
            sdk_kwargs={
                "api_key": "api_key",
                "base_url": "base_url",
                "organization": "organization",
            },
        ),
        ProviderKind(
            kind="anthropic",
            label="Anthropic",
            required=("api_key",),
            allowed=("api_key", "base_url", "default_model"),
            models_endpoint=ModelsEndpoint(
                "/v1/models", key_header="x-api-key", headers={"anthropic-version": "2023-06-01"}
            ),
            defaults={
                "base_url": "https://api.anthropic.com",
                "default_model": "claude-sonnet-4-5",
            },
            sdk_kwargs={"api_key": "api_key", "base_url": "base_url"},
        ),
        ProviderKind(
            kind="google",
            label="Google AI",
            required=("api_key",),
            allowed=("api_key", "base_url", "default_model"),
            models_endpoint=ModelsEndpoint("/v1beta/models", key_header="x-goog-api-key"),
            defaults={
                "base_url": "https://generativelanguage.googleapis.com",
                "default_model": "gemini-2.5-flash",
            },
            sdk_kwargs={"api_key": "api_key"},
        ),
        ProviderKind(
            kind="azure_openai",
            label="Azure OpenAI",
            required=("api_key", "endpoint", "api_version", "deployment"),
            allowed=("api_key", "endpoint", "api_version", "deployment", "default_model"),
            models_endpoint=ModelsEndpoint(
                "/openai/models",
                url_field="endpoint",
                key_header="api-key",
                field_params={"api_version": "api-version"},
            ),
            defaults={"api_version": "2024-10-21"},
            sdk_kwargs={
                "api_key": "api_key",
                "endpoint": "azure_endpoint",
                "api_version": "api_version",
                "deployment": "azure_deployment",
            },
        ),
        ProviderKind(
            kind="ollama",
            label="Ollama",
            required=("base_url",),
            allowed=("base_url", "default_model"),
            models_endpoint=ModelsEndpoint("/api/tags"),
            defaults={"base_url": "http://127.0.0.1:11434", "default_model": "llama3.2"},
            sdk_kwargs={"base_url": "host"},
        ),
    )
}

KIND_CHOICES = [(spec.kind, spec.label) for spec in KINDS.values()]


def kind_get(kind: str) -> ProviderKind:
    """The spec of ``kind``; ``ValidationError`` naming the known kinds otherwise.

    The message does not repeat what was given: a key pasted into the wrong argument would be
    echoed into an error (and from there into a terminal, a log or a response).
    """
    try:
        return KINDS[kind]
    except KeyError:
        raise ValidationError(
            {"kind": f"Unknown provider kind; use one of {', '.join(KINDS)}."}
        ) from None
