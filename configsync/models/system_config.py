from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.db import models

from configsync.crypto.fields import EncryptedTextField
from configsync.value_types import ValueType, value_parse

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
