"""Declared settings: each key's type, default, help text, category, sensitivity, choices and
validators.

A project declares its settings in ``CONFIGSYNC_SCHEMA`` (Django settings: a dict of key to a dict
of the options below) and/or by calling :func:`declare` from an app's ``AppConfig.ready()``.
``CONFIGSYNC_SCHEMA`` is read on every access (``override_settings`` works) and wins over a
``declare()`` of the same key: the project has the last word over its apps.

What a declaration changes: ``get_system_config(key)`` and ``config.KEY`` serve the declared
default while no value is stored; the admin lists declared keys that have no value yet, edits
values with the type's widget and offers "reset to default"; the system checks refuse a default
that does not parse as its type (``configsync.E050``) and warn about a stored value that no longer
parses under its declared type (``configsync.W050``). An undeclared key works as before.

Nothing here touches the database; a declaration is never replicated (it is code, identical on
every node running the same release).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils.module_loading import import_string

from configsync.conf import app_settings
from configsync.value_types import ValueType, value_parse, value_serialize


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""A declaration without a default: while nothing is stored, lookups raise as for an undeclared
key."""

OPTIONS = frozenset(
    {"type", "default", "help_text", "category", "sensitive", "choices", "validators"}
)
"""The keys of a ``CONFIGSYNC_SCHEMA`` entry (all optional)."""


@dataclass(frozen=True, eq=False)
class Declaration:
    """One declared setting. ``default`` is as declared (typed or text); ``default_value()``
    returns it parsed as ``value_type``."""

    key: str
    value_type: str = ValueType.STR.value
    default: Any = NO_DEFAULT
    help_text: str = ""
    category: str = "general"
    sensitive: bool = False
    choices: tuple[Any, ...] | None = None
    validators: tuple[Any, ...] = field(default=())

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    def default_text(self) -> str:
        """The canonical stored text of the default; ``ValidationError`` when it does not parse
        as the declared type (its message never contains the default)."""
        if not self.has_default:
            raise ValidationError("No default is declared.", code="no_default")
        return value_serialize(self.default, self.value_type)

    def default_value(self) -> Any:
        """The default parsed as the declared type (a fresh copy of a dict or list)."""
        return copy.deepcopy(value_parse(self.default_text(), self.value_type))

    def resolved_validators(self) -> list[Callable[[Any], Any]]:
        """The validators as callables (dotted paths imported); ``ImproperlyConfigured`` naming
        the key when one cannot be imported or is not callable."""
        resolved = []
        for item in self.validators:
            target = item
            if isinstance(item, str):
                try:
                    target = import_string(item)
                except ImportError as exc:
                    raise ImproperlyConfigured(
                        f"The validator {item!r} of the declared setting {self.key} cannot be "
                        f"imported: {exc}"
                    ) from None
            if not callable(target):
                raise ImproperlyConfigured(
                    f"A validator of the declared setting {self.key} is not callable."
                )
            resolved.append(target)
        return resolved

    def validate(self, value: Any) -> None:
        """Check a typed ``value`` against the choices and validators; ``ValidationError``
        (whose message never echoes a sensitive value) when it fails."""
        if self.choices is not None and value not in self.choices:
            if self.sensitive:
                raise ValidationError("Not one of the declared choices.", code="invalid_choice")
            raise ValidationError(
                "Select one of %(choices)s.",
                code="invalid_choice",
                params={"choices": ", ".join(str(c) for c in self.choices)},
            )
        for validator in self.resolved_validators():
            validator(value)

    def problems(self) -> list[str]:
        """What is wrong with this declaration, as sentences naming the key (system checks)."""
        if self.value_type not in ValueType.values:
            return [
                f"The declared setting {self.key} has the unknown type {self.value_type!r}; use "
                f"one of {', '.join(ValueType.values)}."
            ]
        found: list[str] = []
        try:
            self.resolved_validators()
        except ImproperlyConfigured as exc:
            found.append(str(exc))
        if self.has_default:
            try:
                self.validate(self.default_value())
            except ValidationError as exc:
                found.append(
                    f"The declared default of {self.key} does not parse as {self.value_type}: "
                    f"{' '.join(exc.messages)}"
                )
            except ImproperlyConfigured:
                pass  # reported above
        return found


_declared: dict[str, Declaration] = {}


def _build(key: str, options: Any) -> Declaration:
    if not isinstance(options, dict):
        raise ImproperlyConfigured(
            f"CONFIGSYNC_SCHEMA[{key!r}] must be a dict of {', '.join(sorted(OPTIONS))}."
        )
    unknown = set(options) - OPTIONS
    if unknown:
        raise ImproperlyConfigured(
            f"CONFIGSYNC_SCHEMA[{key!r}] has unknown option(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(OPTIONS))}."
        )
    return _make(
        key,
        value_type=options.get("type", ValueType.STR.value),
        default=options.get("default", NO_DEFAULT),
        help_text=options.get("help_text", ""),
        category=options.get("category", "general"),
        sensitive=options.get("sensitive", False),
        choices=options.get("choices"),
        validators=options.get("validators", ()),
    )


def _make(
    key: str,
    *,
    value_type: str,
    default: Any,
    help_text: str,
    category: str,
    sensitive: bool,
    choices: Iterable[Any] | None,
    validators: Iterable[Any],
) -> Declaration:
    if callable(validators) or isinstance(validators, str):
        validators = (validators,)
    return Declaration(
        key=str(key),
        value_type=str(value_type),
        default=default,
        help_text=str(help_text or ""),
        category=str(category or "general"),
        sensitive=bool(sensitive),
        choices=None if choices is None else tuple(choices),
        validators=tuple(validators),
    )


def declare(
    key: str,
    *,
    type: str = "str",  # the public name, as in CONFIGSYNC_SCHEMA
    default: Any = NO_DEFAULT,
    help_text: str = "",
    category: str = "general",
    sensitive: bool = False,
    choices: Iterable[Any] | None = None,
    validators: Iterable[Any] = (),
) -> Declaration:
    """Declare the setting ``key`` (call it from your app's ``AppConfig.ready()``).

    ``type``: one of ``str int float bool json url``; ``default``: typed (``42``, ``True``, a
    dict) or text, served while no value is stored (left out: lookups raise as for an undeclared
    key); ``sensitive=True``: created as a secret whatever the secret rule says; ``choices``: the
    allowed values (typed); ``validators``: callables or dotted paths called with the typed value,
    raising ``ValidationError``. A bad type or default is reported by the system checks at
    start-up (E050), not here. Declaring a key again with the same options is a no-op; with other
    options it replaces the declaration (the last ``ready()`` wins; ``CONFIGSYNC_SCHEMA`` wins over
    both).
    """
    declaration = _make(
        key,
        value_type=type,
        default=default,
        help_text=help_text,
        category=category,
        sensitive=sensitive,
        choices=choices,
        validators=validators,
    )
    _declared[declaration.key] = declaration
    return declaration


def undeclare(key: str) -> None:
    """Forget a ``declare()`` of ``key`` (tests); ``CONFIGSYNC_SCHEMA`` is untouched."""
    _declared.pop(key, None)


def _settings_schema() -> dict[str, Any]:
    schema = app_settings.SCHEMA or {}
    if not isinstance(schema, dict):
        raise ImproperlyConfigured("CONFIGSYNC_SCHEMA must be a dict of key to options.")
    return schema


def declaration_get(key: str) -> Declaration | None:
    """The declaration of ``key`` (``CONFIGSYNC_SCHEMA`` first, then ``declare()``), or
    ``None``. ``ImproperlyConfigured`` for a malformed ``CONFIGSYNC_SCHEMA`` entry."""
    schema = _settings_schema()
    if key in schema:
        return _build(key, schema[key])
    return _declared.get(key)


def declarations() -> dict[str, Declaration]:
    """Every declaration, by key, sorted by key."""
    merged = dict(_declared)
    for key, options in _settings_schema().items():
        merged[str(key)] = _build(str(key), options)
    return dict(sorted(merged.items()))
