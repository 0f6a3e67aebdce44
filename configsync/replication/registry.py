"""The registry of replicated models and their wire form.

A replicated model is identified across nodes by one natural-key field, never by its auto id.
Its wire form (``serialize``) is a JSON-able dict of every concrete field except the primary key
and the ``created_at``/``updated_at`` bookkeeping; encrypted fields travel as their ciphertext
token, so no node decrypts to replicate and a node missing a key can still store and relay them.

Register a model with :func:`register`; ``configsync`` registers ``SystemConfig`` and
``providers`` registers ``AIProviderConfig``; a deployment's own models are registered through
``configsync.replicate``. Each registration names its data type (its row of the strategy matrix,
``configsync.replication.strategies``) and whether it is critical.

**Validation.** A received version passes exactly the validation a local write passes:
``changes_apply`` builds an unsaved instance from the wire form and calls
:meth:`ReplicatedModel.validate`, i.e. the model's validation hook (:func:`register_validation`,
registered by the model's app beside its before-apply hook) or, by default, ``full_clean()``
without the encrypted fields (cleaning those would decrypt through the attribute; the model's
``clean()`` verifies their tokens itself) and without the uniqueness query. A hook raises
``django.core.exceptions.ValidationError`` whose messages never hold a value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
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
    data_type: str = ""
    """The row of the strategy matrix this model belongs to (several models may share one)."""
    critical: bool = False
    """Critical types sync full-duplex in every mode but ``LOCAL_ONLY`` (see ``strategies``)."""

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

    def validate(self, instance: models.Model) -> None:
        """Run the model's validation on ``instance`` (a received version, unsaved).

        ``ValidationError`` when it would not pass a local write's validation.
        """
        hook = _validators.get(self.label)
        if hook is not None:
            hook(instance)
        else:
            instance.full_clean(exclude=self.encrypted_field_names(), validate_unique=False)

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
Validate = Callable[[models.Model], None]
_validators: dict[str, Validate] = {}


DATA_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
"""A data type name: lower case, digits and ``_``, starting with a letter."""


def register(
    label: str,
    *,
    natural_key_field: str,
    exclude: Iterable[str] = (),
    data_type: str = "",
    critical: bool = False,
) -> None:
    """Make ``label`` (``app_label.modelname``, lower case) a replicated model.

    ``data_type`` names its row of the strategy matrix (default: the model name); ``critical``
    makes it sync full-duplex in every mode but ``LOCAL_ONLY``. ``ValueError`` for a data type
    that is not a lower-case identifier.
    """
    label = label.lower()
    data_type = data_type or label.split(".")[-1]
    if not DATA_TYPE.match(data_type):
        raise ValueError(f"data type {data_type!r} must be a lower-case identifier")
    _registry[label] = ReplicatedModel(
        label=label,
        natural_key_field=natural_key_field,
        exclude=frozenset(exclude),
        data_type=data_type,
        critical=critical,
    )


def register_validation(label: str, hook: Validate) -> None:
    """Validate received versions of ``label`` with ``hook`` (the same rules its local writes
    pass); it gets the unsaved instance and raises ``ValidationError``."""
    _validators[label.lower()] = hook


def get(label: str) -> ReplicatedModel:
    """The registration of ``label``; ``LookupError`` when the model is not replicated."""
    try:
        return _registry[label.lower()]
    except (KeyError, AttributeError):
        raise LookupError(f"{label!r} is not a replicated model") from None


def for_model(model: type[models.Model]) -> ReplicatedModel | None:
    """The registration of ``model``, or ``None`` when it does not replicate."""
    return _registry.get(model._meta.label_lower)


def all_registered() -> list[ReplicatedModel]:
    return list(_registry.values())


def data_types() -> dict[str, bool]:
    """Every registered data type -> whether it is critical (critical if any model of it is)."""
    found: dict[str, bool] = {}
    for rm in _registry.values():
        found[rm.data_type] = found.get(rm.data_type, False) or rm.critical
    return found


def data_type_of(label: str) -> str | None:
    """The data type of the model ``label``; ``None`` when it does not replicate."""
    rm = _registry.get(str(label).lower())
    return rm.data_type if rm else None
