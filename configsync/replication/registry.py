"""The registry of replicated models and their wire form.

A replicated model is identified across nodes by one natural-key field, never by its auto id.
Its wire form (``serialize``) is a JSON-able dict of every concrete field except the primary key
and the ``created_at``/``updated_at`` bookkeeping; encrypted fields travel as their ciphertext
token, so no node decrypts to replicate and a node missing a key can still store and relay them.

Register a model with :func:`register`; ``configsync`` registers ``SystemConfig`` and
``providers`` registers ``AIProviderConfig`` (later: users and a deployment's own models).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models

from configsync.crypto.fields import is_encrypted_field, raw_ciphertext, set_raw_ciphertext

_SKIPPED = {"id", "created_at", "updated_at"}


@dataclass(frozen=True)
class ReplicatedModel:
    """How one model replicates: its label (``app_label.modelname``) and natural key field."""

    label: str
    natural_key_field: str
    exclude: frozenset[str] = field(default_factory=frozenset)

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.label)

    def fields(self) -> list[models.Field]:
        return [
            f
            for f in self.model._meta.concrete_fields
            if not f.primary_key and f.name not in _SKIPPED and f.name not in self.exclude
        ]

    def encrypted_field_names(self) -> list[str]:
        return [f.name for f in self.fields() if is_encrypted_field(f)]

    def natural_key(self, instance: models.Model) -> str:
        return str(getattr(instance, self.natural_key_field))

    def serialize(self, instance: models.Model) -> dict[str, Any]:
        """The wire form of ``instance``: plain values, ciphertext for encrypted fields."""
        data: dict[str, Any] = {}
        for f in self.fields():
            if is_encrypted_field(f):
                data[f.name] = raw_ciphertext(instance, f.name)
            else:
                data[f.name] = f.value_from_object(instance)
        return data

    def deserialize_into(self, instance: models.Model, data: dict[str, Any]) -> models.Model:
        """Copy a wire form onto ``instance`` (unsaved); unknown keys are a ``ValueError``."""
        known = {f.name: f for f in self.fields()}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fields for {self.label}: {', '.join(unknown)}")
        for name, value in data.items():
            f = known[name]
            if is_encrypted_field(f):
                set_raw_ciphertext(instance, name, value)
            else:
                setattr(instance, f.attname, f.to_python(value))
        return instance


_registry: dict[str, ReplicatedModel] = {}


def register(label: str, *, natural_key_field: str, exclude: Iterable[str] = ()) -> None:
    """Make ``label`` (``app_label.modelname``, lower case) a replicated model."""
    _registry[label.lower()] = ReplicatedModel(
        label=label.lower(), natural_key_field=natural_key_field, exclude=frozenset(exclude)
    )


def get(label: str) -> ReplicatedModel:
    """The registration of ``label``; ``LookupError`` when the model is not replicated."""
    try:
        return _registry[label.lower()]
    except KeyError:
        raise LookupError(f"{label!r} is not a replicated model") from None


def for_model(model: type[models.Model]) -> ReplicatedModel | None:
    """The registration of ``model``, or ``None`` when it does not replicate."""
    return _registry.get(model._meta.label_lower)


def all_registered() -> list[ReplicatedModel]:
    return list(_registry.values())
