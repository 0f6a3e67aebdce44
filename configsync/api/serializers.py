"""Serializers of the config API: shape validation and representation only (writes are services).

Sensitive values are write-only: a response carries ``MASK`` and ``has_value`` unless the view
was asked to reveal (and allowed to). No error message echoes the submitted value.
``StrictCharField``, ``choice_errors`` and ``RejectUnknownFieldsMixin`` serve other apps'
serializers too (``providers.serializers``). A body with a field the serializer does not know is
a 400 naming it (``{"type": ["Unknown field; did you mean value_type?"]}``), nothing stored.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from configsync.conf import app_settings
from configsync.logging import MASK, mask_text, register_secret
from configsync.models import SystemConfig
from configsync.value_types import ValueType


def django_error_detail(exc: DjangoValidationError) -> Any:
    """A DRF error detail out of a Django ``ValidationError`` (messages never hold values)."""
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return {"non_field_errors": exc.messages}


def choice_errors(choices: list[str]) -> dict[str, Any]:
    """Error messages for a choice field that name the choices but never the input."""
    return {"invalid_choice": f"Not a valid choice; use one of: {', '.join(choices)}."}


def closest(word: str, choices: list[str]) -> str:
    """The choice nearest to ``word`` (``difflib``), or ``""`` when none is close."""
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return matches[0] if matches else ""


def closest_field(name: str, known: list[str]) -> str:
    """The known field nearest to ``name``, comparing whole names and their ``_`` parts
    (``type`` → ``value_type``, ``modle`` → ``default_model``); ``""`` when none is close."""
    whole = closest(name, known)
    if whole:
        return whole
    parts = {part: field for field in known for part in field.split("_") if part}
    part = closest(name, list(parts))
    return parts[part] if part else ""


def unknown_field_message(name: str, known: list[str]) -> str:
    """``Unknown field; did you mean value_type?`` or ``Unknown field; known fields: …``."""
    suggestion = closest_field(name, known)
    if suggestion:
        return f"Unknown field; did you mean {suggestion}?"
    return f"Unknown field; known fields: {', '.join(known)}."


def field_name_shown(name: str) -> str:
    """How an error names a field the caller sent: as sent, but masked where it has a secret's
    shape or is a secret this process knows (a key pasted where a field name belongs), and cut
    at 100 characters."""
    shown = mask_text(name)
    return shown if len(shown) <= 100 else shown[:99] + "…"


class RejectUnknownFieldsMixin:
    """Refuse a body holding a field the serializer does not declare: 400 naming each one.

    Read-only fields are known (a body read back and sent again is accepted; they are ignored).
    The messages name the field (``field_name_shown``: never a secret), never its value.
    """

    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = [str(name) for name in data if name not in self.fields]
            if unknown:
                writable = [name for name, field in self.fields.items() if not field.read_only]
                raise serializers.ValidationError(
                    {
                        field_name_shown(name): [unknown_field_message(name, writable)]
                        for name in sorted(unknown)
                    },
                    code="unknown_field",
                )
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of converting them."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.ANY)
class TypedValueField(serializers.Field):
    """A JSON value of any type (string, number, boolean, object, array or null)."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class SystemConfigSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """One setting. ``value`` is typed by ``value_type``; masked when sensitive (see ``reveal``)."""

    schema_required: ClassVar[tuple[str, ...]] = ("value",)
    """Required on create and PUT by ``validate`` (``configsync.api.openapi``)."""

    key = StrictCharField(max_length=255, help_text="Natural key, e.g. DATABASE_URL (create only).")
    value = TypedValueField(
        required=False,
        help_text=(
            "Typed value: a JSON string, number, boolean or object according to value_type. "
            f"Sensitive values read back as {MASK!r} unless revealed; {MASK!r} sent back keeps "
            "the stored value."
        ),
    )
    value_type = serializers.ChoiceField(
        choices=ValueType.values,
        required=False,
        error_messages=choice_errors(list(ValueType.values)),
        help_text="str, int, float, bool, json or url (default str on create).",
    )
    is_sensitive = serializers.BooleanField(
        required=False, help_text="Encrypted at rest and masked in responses."
    )
    category = StrictCharField(max_length=64, required=False, allow_blank=True)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)
    has_value = serializers.BooleanField(read_only=True, help_text="Whether a value is set.")
    value_error = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text=(
            "Why the stored value cannot be read as its type (value is then null); null "
            "normally. Only rows stored before validation covered every path can have one."
        ),
    )
    revealed = serializers.BooleanField(
        read_only=True, help_text="True when value is the plaintext of a sensitive value."
    )
    sensitivity_rule = serializers.CharField(
        read_only=True,
        required=False,
        help_text=(
            "Write responses only: why is_sensitive is what it is — explicit (the request said), "
            "name (the key matches a CONFIGSYNC_SECRET_PATTERNS pattern), url_credentials (the "
            "value is a URL carrying a password), existing (it already was sensitive) or none."
        ),
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate_value(self, value: Any) -> Any:
        if isinstance(value, str) and len(value.encode()) > app_settings.MAX_VALUE_BYTES:
            raise serializers.ValidationError(
                f"Longer than {app_settings.MAX_VALUE_BYTES} bytes.", code="max_length"
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Check the value's JSON type against the effective value_type; wrap json values."""
        instance = self.instance
        if attrs.get("value") == MASK and instance is not None and instance.is_sensitive:
            # The mask this API reads back is no value: sent again (GET, change a field, PUT),
            # it keeps the stored secret, as an omitted value does.
            del attrs["value"]
            return attrs
        if "value" not in attrs:
            if self.instance is not None and not self.partial:
                raise serializers.ValidationError({"value": "Required by PUT (PATCH may omit it)."})
            return attrs
        value = attrs["value"]
        current = self.instance.value_type if self.instance is not None else ValueType.STR
        value_type = attrs.get("value_type") or current
        if value is None:
            raise serializers.ValidationError({"value": "A value is required (null given)."})
        if value_type == ValueType.JSON:
            # Any JSON value is valid; pass it as JSON text so a JSON string stays a string.
            attrs["value"] = json.dumps(value, ensure_ascii=False)
        elif value_type in (ValueType.STR, ValueType.URL) and not isinstance(value, str):
            raise serializers.ValidationError({"value": f"Enter a string for type {value_type}."})
        elif isinstance(value, str) and "\x00" in value:
            raise serializers.ValidationError({"value": "Null characters are not allowed."})
        elif isinstance(value, dict | list):
            raise serializers.ValidationError({"value": f"Enter a scalar for type {value_type}."})
        sensitive = attrs.get("is_sensitive", getattr(self.instance, "is_sensitive", False))
        if sensitive and isinstance(attrs["value"], str):
            # Masked from here on (logs, a DEBUG report of a fault before the field is set).
            register_secret(attrs["value"])
        return attrs

    def to_representation(self, instance: SystemConfig) -> dict[str, Any]:
        reveal = bool(self.context.get("reveal"))
        revealed = instance.is_sensitive and reveal
        problem = None
        if instance.is_sensitive and not reveal:
            value: Any = MASK if instance.has_value else None
        else:
            value, problem = instance.typed_value_or_problem()
        body = {
            "key": instance.key,
            "value": value,
            "value_error": problem,
            "value_type": instance.value_type,
            "is_sensitive": instance.is_sensitive,
            "category": instance.category,
            "description": instance.description,
            "has_value": instance.has_value,
            "revealed": revealed,
            "created_at": serializers.DateTimeField().to_representation(instance.created_at),
            "updated_at": serializers.DateTimeField().to_representation(instance.updated_at),
        }
        if self.context.get("sensitivity_rule"):
            body["sensitivity_rule"] = self.context["sensitivity_rule"]
        return body


class SystemConfigUpdateSerializer(SystemConfigSerializer):
    """PUT/PATCH body: the key comes from the URL."""

    key = StrictCharField(read_only=True)  # type: ignore[assignment]
