"""The registry of replicated models and their wire form.

A replicated model is identified across nodes by one natural-key field, never by its auto id.
Its wire form (``serialize``) is a JSON-able dict of every concrete field except the primary key
and the ``created_at``/``updated_at`` bookkeeping; encrypted fields travel as their ciphertext
token, so no node decrypts to replicate and a node missing a key can still store and relay them.

Register a model with :func:`register`; ``configsync`` registers ``SystemConfig`` and Django's
users and groups (``configsync.replication.auth``), ``providers`` registers ``AIProviderConfig``;
a deployment's own models are registered through ``configsync.replicate``. Each registration
names its data type (its row of the strategy matrix, ``configsync.replication.strategies``)
and whether it is critical.

**Sensitive fields** (``register(sensitive=...)``): fields the model stores plainly but that must
never travel or sit in the change feed in the clear (``auth.user.password``, a hash that would
otherwise be open to offline guessing). ``serialize`` encrypts them with the keyring, bound to
``<label>.<field>:<natural key>`` (``encryption_context_for``), so ``ReplicatedRecord.data``,
kept conflicts, quarantined payloads and the wire only ever hold the token; a token of the
record's previous version that decrypts to the same value is reused, so a save that does not
change the value is no new version. ``deserialize_into`` decrypts. A node that cannot decrypt
(key missing, token not made for this record) cannot write the model's plain column, so the
version fails validation and is quarantined (retried every beat: it applies once the key is
configured) rather than stored unreadable and relayed like an ``EncryptedTextField`` token.
:meth:`ReplicatedModel.encrypted_field_names` names them too (rotation of kept conflicts, the
unreadable flag, validation without decrypting through the attribute).

**Many-to-many fields** (``register(many_to_many=...)``) travel as the sorted natural keys of the
related rows (Django's ``natural_key()`` / ``get_by_natural_key``): one string for a one-part
key (a group's name), else a list (a permission's ``[codename, app_label, model]``). Applying
sets the relation after the row is saved (:meth:`ReplicatedModel.save_related`). A related row
missing on the receiver is created (empty, by its natural key) when its model replicates too —
its own version is in the feed and fills it in, and a group must not hold up its members —
and is a validation failure (quarantine) otherwise: a permission is made by ``migrate`` from
code, so one this node lacks means the nodes run different code, and inventing it would grant
a right no code checks. Local changes of the relation arrive through ``m2m_changed``
(``configsync.replication.receivers``).

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
from functools import cached_property
from typing import Any

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models

from configsync.crypto.fields import (
    encryption_context_for,
    is_encrypted_field,
    raw_ciphertext,
    set_raw_ciphertext,
)

_SKIPPED = {"id", "created_at", "updated_at"}
_PENDING_M2M = "_configsync_pending_m2m"

WireKey = str | list[str]


def _wire_key(natural_key: tuple[Any, ...]) -> WireKey:
    parts = [str(part) for part in natural_key]
    return parts[0] if len(parts) == 1 else parts


def _sort_key(value: WireKey) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


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
    sensitive: frozenset[str] = field(default_factory=frozenset)
    many_to_many: tuple[str, ...] = ()

    @cached_property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.label)

    @cached_property
    def _fields(self) -> tuple[models.Field, ...]:
        return tuple(
            f
            for f in self.model._meta.concrete_fields
            if not f.primary_key and f.name not in _SKIPPED and f.name not in self.exclude
        )

    @cached_property
    def field_map(self) -> dict[str, models.Field]:
        """The wire form's concrete fields by name (read only: shared by every caller)."""
        return {f.name: f for f in self._fields}

    def fields(self) -> list[models.Field]:
        return list(self._fields)

    def wire_field_names(self) -> list[str]:
        """Every name the wire form may carry: concrete fields, then many-to-many fields."""
        return [f.name for f in self.fields()] + list(self.many_to_many)

    def m2m_field(self, name: str) -> models.ManyToManyField[Any, Any]:
        f = self.model._meta.get_field(name)
        assert isinstance(f, models.ManyToManyField)
        return f

    def encrypted_field_names(self) -> list[str]:
        """Fields whose wire form is a ciphertext token: encrypted fields and sensitive ones."""
        return list(self.encrypted_fields)

    @cached_property
    def encrypted_fields(self) -> tuple[str, ...]:
        """:meth:`encrypted_field_names`, read only (computed once)."""
        return tuple(
            f.name for f in self._fields if is_encrypted_field(f) or f.name in self.sensitive
        )

    @cached_property
    def set_writable(self) -> bool:
        """Whether received versions of this model may be written as a set of rows (one insert,
        one update, one delete per page) rather than through ``save()``/``delete()`` per record.

        Only what saving would do anyway: no many-to-many or sensitive fields (they need
        ``save_related`` and decryption), no own ``save``/``delete``, a database-generated
        primary key, every other column a plain one whose ``save()`` writes the attribute as it
        is (text, flags, integers, JSON, date-times, ciphertext tokens: see
        :func:`plain_column`), a unique natural key and no other unique field or constraint (so
        a key names one row and the order of writes within a page cannot matter), nothing that
        references its rows (a delete cascades nowhere) and no parent model. What is decided at
        apply time (a before-apply hook, model-signal receivers outside configsync) is
        ``changes_apply``'s part.
        """
        model = self.model
        meta = model._meta
        pk = meta.pk
        return (
            not self.many_to_many
            and not self.sensitive
            and model.save is models.Model.save
            and model.delete is models.Model.delete
            and isinstance(pk, models.AutoField | models.BigAutoField | models.SmallAutoField)
            and not meta.parents
            and not meta.related_objects
            and not meta.unique_together
            and not meta.constraints
            and getattr(meta.get_field(self.natural_key_field), "unique", False)
            and all(
                plain_column(f) and (not f.unique or f.name == self.natural_key_field)
                for f in meta.concrete_fields
                if not f.primary_key
            )
        )

    def _context(self, name: str, instance: models.Model) -> str:
        return encryption_context_for(
            model_label=self.label, field_name=name, natural_key=self.natural_key(instance)
        )

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
        self._validate_related(instance)

    def _validate_related(self, instance: models.Model) -> None:
        """Every related row a pending many-to-many value names exists here or can be created."""
        pending: dict[str, list[WireKey]] = getattr(instance, _PENDING_M2M, {})
        errors: dict[str, list[ValidationError]] = {}
        for name, keys in pending.items():
            related = self.m2m_field(name).related_model
            assert isinstance(related, type)
            target = for_model(related)
            for key in keys:
                parts = [key] if isinstance(key, str) else key
                if target is not None and len(parts) == 1:
                    key_field = related._meta.get_field(target.natural_key_field)
                    assert isinstance(key_field, models.Field)
                    try:
                        key_field.clean(parts[0], None)
                    except ValidationError:
                        errors.setdefault(name, []).append(
                            ValidationError("a related key is not valid", code="invalid_key")
                        )
                    continue
                manager: Any = related._default_manager
                try:
                    manager.get_by_natural_key(*parts)
                except (ObjectDoesNotExist, TypeError, ValueError):
                    errors.setdefault(name, []).append(
                        ValidationError(
                            "a related row named here does not exist on this node",
                            code="unknown_related",
                        )
                    )
        if errors:
            raise ValidationError(errors)

    def serialize(
        self, instance: models.Model, previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The wire form of ``instance``: plain values, ciphertext for encrypted and sensitive
        fields, natural keys for many-to-many fields. ``previous`` (the record's current wire
        form) lends its token to a sensitive field whose value did not change."""
        data: dict[str, Any] = {}
        for f in self.fields():
            if is_encrypted_field(f):
                data[f.name] = raw_ciphertext(instance, f.name)
            elif f.name in self.sensitive:
                data[f.name] = self._seal(instance, f, (previous or {}).get(f.name))
            else:
                data[f.name] = f.value_from_object(instance)
        for name in self.many_to_many:
            if instance.pk is None:
                data[name] = []
                continue
            related = getattr(instance, name).all()
            data[name] = sorted((_wire_key(obj.natural_key()) for obj in related), key=_sort_key)
        return data

    def _seal(self, instance: models.Model, f: models.Field, previous: Any) -> str | None:
        from configsync.crypto.keyring import get_keyring

        value = f.value_from_object(instance)
        if value in (None, ""):
            return None
        keyring = get_keyring()
        context = self._context(f.name, instance)
        if isinstance(previous, str):
            try:
                if keyring.decrypt(previous, context=context) == value:
                    return previous
            except ValueError:
                pass
        return keyring.encrypt(str(value), context=context)

    def _open(self, instance: models.Model, name: str, token: Any) -> str:
        from configsync.crypto.keyring import get_keyring
        from configsync.logging import register_secret

        try:
            if not isinstance(token, str):
                raise ValueError("not a token")
            plain = get_keyring().decrypt(token, context=self._context(name, instance))
        except Exception:
            raise ValidationError(
                {name: ValidationError("cannot be decrypted on this node", code="invalid_token")}
            ) from None
        register_secret(plain)
        return plain

    def deserialize_into(self, instance: models.Model, data: dict[str, Any]) -> models.Model:
        """Copy a wire form onto ``instance`` (unsaved); unknown keys are a ``ValueError``.

        The natural key is set first (a sensitive field's token is bound to it); a sensitive
        field that cannot be decrypted here is a ``ValidationError``. Many-to-many values are
        kept on the instance until :meth:`save_related`."""
        known = {f.name: f for f in self.fields()}
        unknown = sorted(set(data) - set(known) - set(self.many_to_many))
        if unknown:
            raise ValueError(f"unknown fields for {self.label}: {', '.join(unknown)}")
        if self.natural_key_field in data:
            key_field = known[self.natural_key_field]
            setattr(instance, key_field.attname, key_field.to_python(data[self.natural_key_field]))
        pending: dict[str, list[WireKey]] = {}
        for name, value in data.items():
            if name in self.many_to_many:
                pending[name] = _parse_keys(name, value)
                continue
            f = known[name]
            if is_encrypted_field(f):
                set_raw_ciphertext(instance, name, value)
            elif name in self.sensitive:
                setattr(
                    instance, f.attname, "" if value is None else self._open(instance, name, value)
                )
            else:
                setattr(instance, f.attname, f.to_python(value))
        setattr(instance, _PENDING_M2M, pending)
        return instance

    def save_related(self, instance: models.Model) -> None:
        """Set the many-to-many values ``deserialize_into`` kept (after ``instance`` is saved).

        Related rows of a replicated model that are missing are created by their natural key;
        call it with ``applying_remote()`` set so neither write becomes a local change."""
        pending: dict[str, list[WireKey]] = getattr(instance, _PENDING_M2M, {})
        for name, keys in pending.items():
            related = self.m2m_field(name).related_model
            assert isinstance(related, type)
            target = for_model(related)
            rows = []
            for key in keys:
                parts = [key] if isinstance(key, str) else key
                if target is not None and len(parts) == 1:
                    lookup: dict[str, Any] = {target.natural_key_field: parts[0]}
                    found = related._default_manager.filter(**lookup).first()
                    row = found or related._default_manager.create(**lookup)
                else:
                    manager: Any = related._default_manager
                    row = manager.get_by_natural_key(*parts)
                rows.append(row)
            getattr(instance, name).set(rows)
        if hasattr(instance, _PENDING_M2M):
            delattr(instance, _PENDING_M2M)


_PLAIN_BASES: tuple[type[models.Field], ...] = (
    models.CharField,
    models.TextField,
    models.BooleanField,
    models.IntegerField,
    models.JSONField,
    models.DateTimeField,
)
_WRITE_METHODS = (
    "pre_save",
    "get_db_prep_save",
    "get_db_prep_value",
    "get_prep_value",
    "to_python",
)


def plain_column(f: models.Field) -> bool:
    """Whether ``save()`` writes field ``f`` as its (``to_python``-ed) attribute: one of
    Django's text, flag, integer, JSON or date-time fields (subclasses too, e.g. ``SlugField``)
    that overrides none of the methods a write goes through, or an ``EncryptedTextField`` (its
    token is written as is). A date-time field with ``auto_now``/``auto_now_add`` is stamped
    with the write's time, as ``pre_save`` does."""
    if is_encrypted_field(f):
        return True
    cls = type(f)
    base = next((b for b in cls.__mro__ if b in _PLAIN_BASES), None)
    if base is None or f.generated or f.db_returning or f.has_db_default():
        return False
    return all(getattr(cls, name) is getattr(base, name) for name in _WRITE_METHODS)


def _parse_keys(name: str, value: Any) -> list[WireKey]:
    """A many-to-many wire value: a list of strings or of non-empty lists of strings."""
    if not isinstance(value, list) or len(value) > 10_000:
        raise ValueError(f"{name}: must be a list of natural keys")
    keys: list[WireKey] = []
    for item in value:
        if isinstance(item, str):
            keys.append(item)
        elif (
            isinstance(item, list)
            and 0 < len(item) <= 10
            and all(isinstance(part, str) for part in item)
        ):
            keys.append(list(item))
        else:
            raise ValueError(f"{name}: must be a list of natural keys")
    return keys


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
    sensitive: Iterable[str] = (),
    many_to_many: Iterable[str] = (),
) -> None:
    """Make ``label`` (``app_label.modelname``, lower case) a replicated model.

    ``exclude``: concrete fields that stay local; ``sensitive``: plain fields encrypted on the
    wire and in the feed; ``many_to_many``: relations replicated by natural key (see above).
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
        sensitive=frozenset(sensitive),
        many_to_many=tuple(many_to_many),
    )
    for listener in _listeners:
        listener(label)


_listeners: list[Callable[[str], None]] = []


def on_register(listener: Callable[[str], None]) -> None:
    """Call ``listener(label)`` for every model registered from now on (once per listener):
    replication's receivers connect to each registered model this way."""
    if listener not in _listeners:
        _listeners.append(listener)


def register_validation(label: str, hook: Validate) -> None:
    """Validate received versions of ``label`` with ``hook`` (the same rules its local writes
    pass); it gets the unsaved instance and raises ``ValidationError``."""
    _validators[label.lower()] = hook


def validation_state() -> tuple[object, ...]:
    """What validating a received version depends on in the registry (the registered models
    and their validation hooks), comparable with ``==``: a batch checked ahead of applying it
    (``wire.changes_precheck``) is checked again when this changed meanwhile."""
    return (tuple(_registry.items()), tuple(_validators.items()))


def has_validation_hook(label: str) -> bool:
    """Whether ``label`` validates received versions through a hook of its app."""
    return label.lower() in _validators


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
