from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from configsync.crypto.fields import Ciphertext, EncryptedTextField
from configsync.value_types import ValueType, value_canonical, value_parse, value_type_known

KEY_VALIDATOR = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_.\-:]{0,254}$",
    "Use letters, digits, '_', '.', '-' or ':', starting with a letter or '_'.",
    code="invalid_key",
)


class SystemConfig(models.Model):
    """One system setting, identified across nodes by ``key`` (never by the auto id).

    A non-sensitive value is stored as canonical text in ``value``; a sensitive one only as
    ciphertext in ``secret_value`` (``value`` is then empty). Write through
    ``configsync.services.system_config``; read typed values with ``typed_value()``.
    """

    natural_key_field = "key"

    key = models.CharField(
        verbose_name="key",
        max_length=255,
        unique=True,
        validators=[KEY_VALIDATOR],
        help_text="Natural key, the record's identity on every node, e.g. DATABASE_URL.",
    )
    value_type = models.CharField(
        verbose_name="type",
        max_length=8,
        choices=ValueType.choices,
        default=ValueType.STR,
        help_text="How the value is parsed and validated.",
    )
    value = models.TextField(
        verbose_name="value",
        blank=True,
        default="",
        help_text="Canonical text of a non-sensitive value; empty when the value is sensitive.",
    )
    secret_value = EncryptedTextField(
        null=True,
        blank=True,
        verbose_name="secret value",
        help_text="Ciphertext of a sensitive value (AES-GCM); never shown.",
    )
    is_sensitive = models.BooleanField(
        verbose_name="sensitive",
        default=False,
        help_text="Sensitive values are encrypted at rest, masked in responses and logs.",
    )
    category = models.CharField(
        verbose_name="category",
        max_length=64,
        blank=True,
        default="general",
        db_index=True,
        help_text="Free-form group, e.g. database, security, storage.",
    )
    description = models.TextField(
        verbose_name="description", blank=True, default="", help_text="What the setting is for."
    )
    created_at = models.DateTimeField(verbose_name="created at", auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    class Meta:
        verbose_name = "system setting"
        verbose_name_plural = "system settings"
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    @property
    def has_value(self) -> bool:
        """Whether a value is set, without decrypting it."""
        if self.is_sensitive:
            return self.__dict__.get("secret_value") is not None
        return self.value != "" or self.value_type == ValueType.STR

    def raw_value(self) -> str:
        """The canonical text, decrypted when sensitive (``DecryptionError`` on failure)."""
        if self.is_sensitive:
            return self.secret_value or ""
        return self.value

    def typed_value(self) -> Any:
        """The value as its declared Python type."""
        return value_parse(self.raw_value(), self.value_type)

    def typed_value_or_problem(self) -> tuple[Any, str | None]:
        """``(typed value, None)``, or ``(None, reason)`` when the stored text no longer parses as
        its type (a row stored before received values were validated; check W040 names them).

        For listings: one unreadable record must not take a whole list down. The reason names
        the rule, never the value. ``DecryptionError`` still propagates.
        """
        try:
            return self.typed_value(), None
        except ValidationError as exc:
            return None, " ".join(exc.messages)

    def full_clean(
        self,
        exclude: Iterable[str] | None = None,
        validate_unique: bool = True,
        validate_constraints: bool = True,
    ) -> None:
        """``Model.full_clean``; remembers ``exclude`` for :meth:`clean` (see there)."""
        excluded = frozenset(exclude or ())
        self._clean_exclude = excluded
        try:
            super().full_clean(set(excluded), validate_unique, validate_constraints)
        finally:
            del self._clean_exclude

    def clean(self) -> None:
        """The rules every stored setting passes, however it arrives (REST, admin, CLI, .env
        bridge, replication: ``system_config_set`` and the replication registry both run
        ``full_clean``, which calls this).

        Text fields are storable on every backend; the type is known; a plain setting holds
        canonical text of its type (at most ``MAX_VALUE_BYTES``) and no ciphertext; a sensitive
        one holds no plain text and, when this node holds the key, a token bound to this record
        whose plaintext passes the same value rules (decrypted to check, never kept). Never
        decrypts through the attribute and never names a value in a message.

        A ``full_clean`` that excludes ``value`` leaves the value rules to its caller: the admin
        form validates the submitted value itself and its instance holds the old value while
        the sensitivity changes; the service it calls then runs every rule.
        """
        from configsync.conf import app_settings
        from configsync.validation import storable_text_errors, text_problem, token_plaintext

        errors: dict[str, Any] = storable_text_errors(self)
        if str(self.key).endswith("\n"):  # the pattern's "$" also matches before a final "\n"
            errors.setdefault("key", KEY_VALIDATOR.message)
        if not value_type_known(self.value_type):
            errors.setdefault("value_type", "Unknown type.")
            raise ValidationError(errors)
        if "value" in getattr(self, "_clean_exclude", ()):
            if errors:
                raise ValidationError(errors)
            return
        secret = self.__dict__.get("secret_value")
        if self.is_sensitive:
            if self.value:
                errors.setdefault(
                    "value", "A sensitive setting keeps its value only as ciphertext."
                )
            if secret is None:
                text: str | None = ""
            elif isinstance(secret, Ciphertext):
                try:
                    text = token_plaintext(self, "secret_value")  # None: a key we lack
                except ValidationError as exc:
                    errors.update(exc.message_dict)
                    text = None
            else:
                text = str(secret)  # a local write's pending plaintext
            field = "secret_value"
        else:
            if secret is not None:
                errors.setdefault("secret_value", "A plain setting holds no ciphertext.")
            text, field = self.value, "value"
        if text is not None and field not in errors:
            problem = text_problem(text)
            if problem:
                errors[field] = f"The value {problem}."
            elif len(text.encode()) > app_settings.MAX_VALUE_BYTES:
                errors[field] = f"Longer than {app_settings.MAX_VALUE_BYTES} bytes."
            else:
                try:
                    value_canonical(text, self.value_type)
                except ValidationError as exc:
                    errors[field] = exc.messages
        if errors:
            raise ValidationError(errors)
