"""``EncryptedTextField``: a model field that holds only AES-GCM ciphertext in the database.

Why our own and not a package: the libraries we looked at (django-fernet-fields,
django-cryptography, django-encrypted-model-fields) either derive keys from ``SECRET_KEY``, use no
associated data (a ciphertext copied onto another row decrypts fine), decrypt eagerly on load (a
node missing a key could not even relay a row), or return ciphertext on failure. This field:

* encrypts in ``pre_save`` with the keyring's primary key and binds the token to
  ``<app_label>.<model>.<field>:<natural key>`` as associated data; the model names its natural
  key with the class attribute ``natural_key_field``, and that key must not change once a row
  holds ciphertext (renaming is delete + create);
* keeps what it loaded as a :class:`Ciphertext` and decrypts lazily on attribute access, raising
  :class:`~configsync.crypto.errors.DecryptionError` naming record and field on any failure;
* lets replication read and write the raw token (``raw_ciphertext`` / assigning a ``Ciphertext``)
  without ever decrypting;
* refuses lookups (but ``isnull``), ``unique`` and indexes: equal plaintexts never have equal
  ciphertexts, so none of them could work.

Assigning ``""`` or ``None`` stores NULL: "no secret set".
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core import checks
from django.core.exceptions import FieldError
from django.db import models

from configsync.crypto.errors import DecryptionError
from configsync.crypto.keyring import TokenError, get_keyring, is_token
from configsync.logging import register_secret


class Ciphertext(str):
    """A token as stored in the database; marks a value that must not be encrypted again."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Ciphertext(<redacted>)"


def encryption_context_for(*, model_label: str, field_name: str, natural_key: str) -> str:
    """The associated-data context binding a token to one record's field, from its names:
    ``<app_label.model>.<field>:<natural key>``. The one place that format is written."""
    return f"{model_label}.{field_name}:{natural_key}"


def encryption_context(instance: models.Model, field_name: str) -> str:
    """The associated-data context binding a token to one record's field."""
    natural_key_field = getattr(type(instance), "natural_key_field", None)
    if not natural_key_field:
        raise TypeError(f"{type(instance).__name__} must name its natural_key_field")
    return encryption_context_for(
        model_label=instance._meta.label_lower,
        field_name=field_name,
        natural_key=getattr(instance, natural_key_field),
    )


_raw_reads: ContextVar[bool] = ContextVar("configsync_raw_reads", default=False)


@contextmanager
def raw_reads() -> Iterator[None]:
    """Within the block, reading an encrypted attribute gives its token and never decrypts."""
    token = _raw_reads.set(True)
    try:
        yield
    finally:
        _raw_reads.reset(token)


def _guard_refresh_from_db(cls: type[models.Model]) -> None:
    """Make ``refresh_from_db`` copy tokens, not plaintext.

    Django's ``refresh_from_db`` reads each field of a fresh instance through its descriptor and
    assigns it: through ours that would decrypt (failing on a node missing the key) and leave a
    pending plaintext that the next ``save()`` re-encrypts. Wrapped once per model class; done
    here rather than with a base class so models need no particular ancestry.
    """
    if "_configsync_refresh_guard" in cls.__dict__:
        return
    original = cls.refresh_from_db

    @functools.wraps(original)
    def refresh_from_db(self: models.Model, *args: Any, **kwargs: Any) -> None:
        with raw_reads():
            original(self, *args, **kwargs)

    cls.refresh_from_db = refresh_from_db  # type: ignore[method-assign]
    cls._configsync_refresh_guard = True  # type: ignore[attr-defined]


class _EncryptedAttribute:
    """Descriptor: plaintext on read (decrypted lazily), plaintext or Ciphertext on write."""

    def __init__(self, field: EncryptedTextField) -> None:
        self.field = field

    def __get__(self, instance: models.Model | None, owner: type) -> Any:
        if instance is None:
            return self
        attname = self.field.attname
        if attname not in instance.__dict__ and instance.pk is not None:
            # Deferred by .only()/.defer(): load the token like Django's DeferredAttribute does.
            # (refresh_from_db would read through this descriptor and store plaintext.)
            manager = type(instance)._base_manager.db_manager(instance._state.db)
            rows = list(manager.filter(pk=instance.pk).values_list(attname, flat=True))
            instance.__dict__[attname] = rows[0] if rows else None
        value = instance.__dict__.get(attname)
        if not isinstance(value, Ciphertext) or _raw_reads.get():
            return value
        cache = instance.__dict__.setdefault("_configsync_plaintext", {})
        cached = cache.get(self.field.attname)
        if cached is not None and cached[0] is value:
            return cached[1]
        plaintext = self.field.decrypt(instance, value)
        register_secret(plaintext)
        cache[self.field.attname] = (value, plaintext)
        return plaintext

    def __set__(self, instance: models.Model, value: Any) -> None:
        if value == "":
            value = None
        if value is not None and not isinstance(value, Ciphertext):
            value = str(value)
            register_secret(value)
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """A text field stored as AES-GCM ciphertext; see the module docstring for the contract."""

    description = "Encrypted text (AES-256-GCM, key id and associated data in each token)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        if self.unique or getattr(self, "db_index", False):
            errors.append(
                checks.Error(
                    "EncryptedTextField cannot be unique or indexed: ciphertexts never repeat.",
                    obj=self,
                    id="configsync.E010",
                )
            )
        if not getattr(self.model, "natural_key_field", None):
            errors.append(
                checks.Error(
                    "A model with an EncryptedTextField must set natural_key_field.",
                    obj=self,
                    id="configsync.E011",
                )
            )
        return errors

    def contribute_to_class(self, cls: type[models.Model], name: str, **kwargs: Any) -> None:  # type: ignore[override]
        super().contribute_to_class(cls, name, **kwargs)
        setattr(cls, self.attname, _EncryptedAttribute(self))
        if not cls._meta.abstract:
            _guard_refresh_from_db(cls)

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name != "isnull":
            raise FieldError(
                f"{self.model.__name__}.{self.name} is encrypted and cannot be filtered by "
                f"'{lookup_name}'"
            )
        return super().get_lookup(lookup_name)

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(f"{self.model.__name__}.{self.name} is encrypted and has no transforms")

    # --- the database side -------------------------------------------------------------------
    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        return None if value is None else Ciphertext(value)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = model_instance.__dict__.get(self.attname)
        if value is None or isinstance(value, Ciphertext):
            return value
        token = Ciphertext(
            get_keyring().encrypt(value, context=encryption_context(model_instance, self.name))
        )
        model_instance.__dict__[self.attname] = token
        model_instance.__dict__.setdefault("_configsync_plaintext", {})[self.attname] = (
            token,
            value,
        )
        return token

    def get_prep_value(self, value: Any) -> Any:
        if value is None or isinstance(value, Ciphertext):
            return None if value is None else str(value)
        if is_token(value):
            return value
        raise ValueError(
            f"{self.model.__name__}.{self.name} only stores ciphertext: set the attribute and "
            "save() so it is encrypted with its record's context"
        )

    def value_from_object(self, obj: models.Model) -> Any:
        """The stored token (or pending plaintext): serialization never decrypts."""
        return obj.__dict__.get(self.attname)

    def value_to_string(self, obj: models.Model) -> str:
        value = obj.__dict__.get(self.attname)
        return "" if value is None else str(value) if isinstance(value, Ciphertext) else ""

    # --- helpers for services and replication ------------------------------------------------
    def decrypt(self, instance: models.Model, token: str) -> str:
        """Decrypt ``token`` for ``instance``; ``DecryptionError`` naming record and field."""
        context = encryption_context(instance, self.name)
        try:
            return get_keyring().decrypt(token, context=context)
        except TokenError as exc:
            natural_key_field = type(instance).natural_key_field  # type: ignore[attr-defined]
            raise DecryptionError(
                model=instance._meta.label_lower,
                field=self.name,
                record=str(getattr(instance, natural_key_field)),
                reason=str(exc),
            ) from None

    def save_form_data(self, instance: models.Model, data: Any) -> None:
        """Forms are write-only: a blank submission keeps the current secret."""
        if data in (None, ""):
            return
        super().save_form_data(instance, data)


def raw_ciphertext(instance: models.Model, field_name: str) -> str | None:
    """The token stored for ``field_name`` (encrypting pending plaintext first), never plaintext."""
    field = instance._meta.get_field(field_name)
    assert isinstance(field, EncryptedTextField)
    token = field.pre_save(instance, add=False)
    return None if token is None else str(token)


def set_raw_ciphertext(instance: models.Model, field_name: str, token: str | None) -> None:
    """Assign a token received from elsewhere without decrypting or re-encrypting it."""
    if token is not None and not is_token(token):
        raise ValueError(f"{field_name}: not a configsync ciphertext")
    instance.__dict__[field_name] = None if token is None else Ciphertext(token)


def is_encrypted_field(field: Any) -> bool:
    return isinstance(field, EncryptedTextField)
