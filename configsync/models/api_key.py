"""API keys of services calling the REST API (``Authorization: Api-Key <key>``)."""

from __future__ import annotations

from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class ServiceAPIKey(AbstractAPIKey):
    """An API key with scopes. Read is implied; ``can_write`` and ``can_reveal`` are granted.

    Only a hash of the key is stored (djangorestframework-api-key: prefix + hashed key); the key
    itself is shown once, when created by ``configsync.services.api_keys.api_key_create``.
    """

    can_write = models.BooleanField(
        verbose_name="can write",
        default=False,
        help_text="May create, change and delete settings and providers.",
    )
    can_reveal = models.BooleanField(
        verbose_name="can reveal secrets",
        default=False,
        help_text="May read sensitive values in plaintext with ?reveal=true (each reveal audited).",
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
