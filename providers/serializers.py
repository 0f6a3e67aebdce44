"""Serializers of the AI provider API: shape validation and representation only (writes are
``providers.services``).

The API key is write-only: a response carries ``MASK`` and ``has_api_key`` unless the view was
asked to reveal (and allowed to). No error message echoes the submitted value.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import serializers

from configsync.api.serializers import (
    RejectUnknownFieldsMixin,
    StrictCharField,
    choice_errors,
    closest,
)
from configsync.logging import MASK, register_secret
from providers.models import NAME_VALIDATOR, AIProviderConfig
from providers.registry import KINDS


class KindField(serializers.ChoiceField):
    """A provider kind; an unknown one is refused with the closest kind suggested."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and data not in KINDS:
            suggestion = closest(data, list(KINDS))
            if suggestion:
                raise serializers.ValidationError(
                    f"Not a provider kind; did you mean {suggestion}?", code="invalid_choice"
                )
        return super().to_internal_value(data)


class AIProviderSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """One AI provider account. ``api_key`` is write-only: read back masked unless revealed."""

    schema_required: ClassVar[tuple[str, ...]] = ("kind",)
    """Required on create (``configsync.api.openapi``)."""

    name = StrictCharField(
        max_length=64,
        validators=[NAME_VALIDATOR],  # the model's, so the schema carries its pattern
        help_text="Natural key, e.g. openai-main.",
    )
    kind = KindField(
        choices=list(KINDS),
        required=False,
        error_messages=choice_errors(list(KINDS)),
        help_text="Provider kind (required on create).",
    )
    api_key = StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=4096,
        trim_whitespace=True,
        help_text=(
            f"Write: the key ('' clears it; omitted, null or {MASK!r} keeps it). Read: {MASK!r} "
            "when set, the plaintext with ?reveal=true, null when unset."
        ),
    )
    has_api_key = serializers.BooleanField(read_only=True)
    base_url = StrictCharField(max_length=500, required=False, allow_blank=True)
    default_model = StrictCharField(max_length=200, required=False, allow_blank=True)
    organization = StrictCharField(max_length=200, required=False, allow_blank=True)
    endpoint = StrictCharField(max_length=500, required=False, allow_blank=True)
    api_version = StrictCharField(max_length=32, required=False, allow_blank=True)
    deployment = StrictCharField(max_length=200, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    is_default = serializers.BooleanField(required=False)
    revealed = serializers.BooleanField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate_api_key(self, value: str | None) -> str | None:
        if value == MASK and self.instance is not None and self.instance.has_api_key:
            return None  # the mask read back is no key: sent again, it keeps the stored one
        if value:
            # Masked from here on (logs, a DEBUG report of a fault before the field is set).
            register_secret(value)
        return value

    def to_representation(self, instance: AIProviderConfig) -> dict[str, Any]:
        reveal = bool(self.context.get("reveal"))
        has_key = instance.has_api_key
        api_key = (instance.api_key if reveal else MASK) if has_key else None
        dt = serializers.DateTimeField()
        return {
            "name": instance.name,
            "kind": instance.kind,
            "api_key": api_key,
            "has_api_key": has_key,
            "base_url": instance.base_url,
            "default_model": instance.default_model,
            "organization": instance.organization,
            "endpoint": instance.endpoint,
            "api_version": instance.api_version,
            "deployment": instance.deployment,
            "enabled": instance.enabled,
            "is_default": instance.is_default,
            "revealed": bool(reveal and has_key),
            "created_at": dt.to_representation(instance.created_at),
            "updated_at": dt.to_representation(instance.updated_at),
        }


class AIProviderUpdateSerializer(AIProviderSerializer):
    """PUT/PATCH body: the name comes from the URL."""

    schema_required: ClassVar[tuple[str, ...]] = ()

    name = StrictCharField(read_only=True)  # type: ignore[assignment]


class ConnectionTestSerializer(serializers.Serializer):
    """The result of a provider connection test (never contains the key)."""

    ok = serializers.BooleanField()
    detail = StrictCharField()
    status_code = serializers.IntegerField(allow_null=True)
