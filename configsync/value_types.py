"""The typed values of ``SystemConfig``: parsing, validation and canonical text form.

A value is stored as canonical text (``value_serialize``) and read back typed (``value_parse``).
Both raise ``django.core.exceptions.ValidationError`` with a message that never echoes a value.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models


class ValueType(models.TextChoices):
    STR = "str", "Text"
    INT = "int", "Integer"
    FLOAT = "float", "Decimal number"
    BOOL = "bool", "Boolean"
    JSON = "json", "JSON"
    URL = "url", "URL"


def value_type_known(value_type: object) -> bool:
    """Whether ``value_type`` names a type (``ValueType.values``, computed by the enum on every
    access, read once here: this runs for every value validated)."""
    return isinstance(value_type, str) and value_type in _VALUE_TYPES


_VALUE_TYPES = frozenset(ValueType.values)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _check_url(text: str) -> str:
    parts = urlsplit(text)
    if not parts.scheme or not (parts.netloc or parts.path) or any(c.isspace() for c in text):
        raise ValidationError("Enter a valid URL (scheme://host/...).", code="invalid_url")
    if parts.scheme in {"http", "https"} and not parts.netloc:
        raise ValidationError("Enter a valid URL (scheme://host/...).", code="invalid_url")
    return text


def value_parse(raw: str, value_type: str) -> Any:
    """Parse canonical or user-typed text into the Python value of ``value_type``."""
    if not value_type_known(value_type):
        # The message does not repeat what was given (a value pasted into the wrong argument).
        raise ValidationError(
            "Unknown type; use one of %(choices)s.",
            code="invalid_type",
            params={"choices": ", ".join(ValueType.values)},
        )
    text = raw if isinstance(raw, str) else str(raw)
    if value_type == ValueType.STR:
        return text
    if value_type == ValueType.INT:
        try:
            return int(text.strip())
        except ValueError:
            raise ValidationError("Enter a whole number.", code="invalid_int") from None
    if value_type == ValueType.FLOAT:
        try:
            number = float(text.strip())
        except ValueError:
            raise ValidationError("Enter a number.", code="invalid_float") from None
        if not math.isfinite(number):
            raise ValidationError("Enter a finite number.", code="invalid_float")
        return number
    if value_type == ValueType.BOOL:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValidationError("Enter true or false.", code="invalid_bool")
    if value_type == ValueType.JSON:
        _check_json_depth(text)
        try:
            parsed = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise ValidationError("Enter valid JSON.", code="invalid_json") from None
        _check_json(parsed)
        return parsed
    return _check_url(text.strip())


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259): strict renderers refuse them on the way out.
    raise ValueError(name)


def _check_json_depth(text: str) -> None:
    """Refuse JSON text nested deeper than ``MAX_JSON_DEPTH`` before decoding it (no recursion)."""
    from configsync.conf import app_settings
    from configsync.validation import json_depth_exceeds

    limit = int(app_settings.MAX_JSON_DEPTH)
    if json_depth_exceeds(text, limit):
        raise ValidationError(
            "Enter valid JSON: the value is nested deeper than %(limit)s levels.",
            code="invalid_json",
            params={"limit": limit},
        )


def _check_json(value: Any) -> None:
    """A JSON value every read path can render: bounded nesting, storable strings."""
    from configsync.conf import app_settings
    from configsync.validation import value_problem

    problem = value_problem(value, max_depth=int(app_settings.MAX_JSON_DEPTH))
    if problem:
        raise ValidationError(
            "Enter valid JSON: the value %(problem)s.",
            code="invalid_json",
            params={"problem": problem},
        )


def value_canonical(raw: str, value_type: str) -> str:
    """Validate stored text: it must parse as ``value_type`` and already be canonical, i.e.
    exactly what ``value_serialize`` stores (the form every local write leaves)."""
    canonical = _canonical(value_parse(raw, value_type), value_type)
    if canonical != raw:
        raise ValidationError(
            "Not the canonical text of a %(type)s value.",
            code="not_canonical",
            params={"type": value_type},
        )
    return canonical


def value_serialize(value: Any, value_type: str) -> str:
    """Canonical text of a typed (or textual) value; validates it on the way."""
    if isinstance(value, str):
        value = value_parse(value, value_type)
    elif value_type not in ValueType.values:
        value_parse("", value_type)  # raises the unknown-type error
    text = _canonical(value, value_type)
    _check_storable(text)
    return text


def _check_storable(text: str) -> None:
    from configsync.validation import text_problem

    problem = text_problem(text)
    if problem:
        raise ValidationError(
            "The value %(problem)s.", code="unstorable", params={"problem": problem}
        )


def _canonical(value: Any, value_type: str) -> str:
    """Canonical text of the typed ``value`` (a ``str`` of type json is a JSON string)."""
    if value_type == ValueType.BOOL:
        if not isinstance(value, bool):
            raise ValidationError("Enter true or false.", code="invalid_bool")
        return "true" if value else "false"
    if value_type == ValueType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("Enter a whole number.", code="invalid_int")
        return str(value)
    if value_type == ValueType.FLOAT:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValidationError("Enter a number.", code="invalid_float")
        return repr(float(value))
    if value_type == ValueType.JSON:
        _check_json(value)
        try:
            return json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except (TypeError, ValueError, RecursionError):
            raise ValidationError("Enter valid JSON.", code="invalid_json") from None
    if value_type == ValueType.URL:
        return _check_url(str(value))
    return str(value)
