from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from configsync.crypto.fields import Ciphertext, EncryptedTextField
from providers.registry import KIND_CHOICES, OPTION_FIELDS, kind_get

NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_\-]{0,63}$",
    "Use lower-case letters, digits, '_' or '-'.",
    code="invalid_name",
)


class AIProviderConfig(models.Model):
    """Credentials and defaults for one AI provider account, identified by ``name``.

    Which fields a kind uses, requires and defaults is declared in ``providers.registry``;
    ``clean()`` enforces it. Write through ``providers.services``.
    """

    natural_key_field = "name"

    name = models.CharField(
        verbose_name="name",
        max_length=64,
        unique=True,
        validators=[NAME_VALIDATOR],
        help_text="Natural key, the record's identity on every node, e.g. openai-main.",
    )
    kind = models.CharField(
        verbose_name="provider kind",
        max_length=32,
        choices=KIND_CHOICES,
        help_text="Which provider.",
    )
    api_key = EncryptedTextField(
        null=True,
        blank=True,
        verbose_name="API key",
        help_text="Encrypted at rest (AES-GCM); never shown.",
    )
    base_url = models.CharField(
        verbose_name="base URL",
        max_length=500,
        blank=True,
        default="",
        help_text="API base URL; empty for the provider's default.",
    )
    default_model = models.CharField(
        verbose_name="default model",
        max_length=200,
        blank=True,
        default="",
        help_text="Model used when none is asked for.",
    )
    organization = models.CharField(
        verbose_name="organization",
        max_length=200,
        blank=True,
        default="",
        help_text="OpenAI organization id.",
    )
    endpoint = models.CharField(
        verbose_name="endpoint",
        max_length=500,
        blank=True,
        default="",
        help_text="Azure OpenAI resource endpoint.",
    )
    api_version = models.CharField(
        verbose_name="API version",
        max_length=32,
        blank=True,
        default="",
        help_text="Azure OpenAI API version.",
    )
    deployment = models.CharField(
        verbose_name="deployment",
        max_length=200,
        blank=True,
        default="",
        help_text="Azure OpenAI deployment name.",
    )
    enabled = models.BooleanField(
        verbose_name="enabled", default=True, help_text="Disabled providers are not offered."
    )
    is_default = models.BooleanField(
        verbose_name="default provider",
        default=False,
        help_text="At most one provider is the default.",
    )
    created_at = models.DateTimeField(verbose_name="created at", auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    class Meta:
        verbose_name = "AI provider"
        verbose_name_plural = "AI providers"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="providers_one_default",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_api_key(self) -> bool:
        """Whether an API key is stored, without decrypting it."""
        return self.__dict__.get("api_key") is not None

    def validate_constraints(self, exclude: Collection[str] | None = None) -> None:
        """All constraints but the one-default rule, which ``ai_provider_set`` keeps by clearing
        the flag on the others (validating it first would refuse every change of default)."""
        super().validate_constraints(exclude={*(exclude or ()), "is_default"})

    def clean(self) -> None:
        """The rules every stored provider passes, however it arrives (``ai_provider_set`` and
        the replication validation hook both run ``full_clean``, which calls this).

        Text fields are storable on every backend; the kind's required/unused/URL rules hold;
        the API key, when this node holds its key, is a token bound to this record whose
        plaintext is storable text of at most ``MAX_VALUE_BYTES`` (decrypted to check, never
        kept). Never decrypts through the attribute; messages never hold a value.
        """
        from configsync.conf import app_settings
        from configsync.validation import storable_text_errors, text_problem, token_plaintext

        errors: dict[str, Any] = storable_text_errors(self)
        if str(self.name).endswith("\n"):  # the pattern's "$" also matches before a final "\n"
            errors.setdefault("name", NAME_VALIDATOR.message)
        secret = self.__dict__.get("api_key")
        text: str | None
        try:
            text = token_plaintext(self, "api_key") if isinstance(secret, Ciphertext) else secret
        except ValidationError as exc:
            errors.update(exc.message_dict)
            text = None
        if text is not None:
            problem = text_problem(str(text))
            if problem:
                errors["api_key"] = f"The value {problem}."
            elif len(str(text).encode()) > app_settings.MAX_VALUE_BYTES:
                errors["api_key"] = f"Longer than {app_settings.MAX_VALUE_BYTES} bytes."
        if errors:
            raise ValidationError(errors)
        spec = kind_get(self.kind)
        values = {name: getattr(self, name) for name in OPTION_FIELDS if name != "api_key"}
        values["api_key"] = "set" if self.has_api_key else ""
        spec.validate(values)
