"""API keys of services calling the REST API (``Authorization: Api-Key <key>``)."""

from __future__ import annotations

import enum
from typing import cast

from django.db import models
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from rest_framework_api_key.models import AbstractAPIKey, APIKeyManager

GRANT_REVEAL_PERMISSION = "configsync.grant_reveal_serviceapikey"
"""The permission (``app_label.codename``) a Django user needs to give an API key the reveal
scope in the admin (superusers hold every permission)."""


class KeyState(enum.Enum):
    """What a presented key that matches a stored one is worth."""

    USABLE = "usable"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ServiceAPIKeyManager(APIKeyManager):
    """The package's manager, plus :meth:`check_key`, which tells revoked and expired keys apart
    from unknown ones (the package's ``get_from_key`` treats a revoked key as unknown)."""

    # Its locals hold the presented key: hidden from error reports.
    @method_decorator(sensitive_variables())
    def check_key(self, key: str) -> tuple[ServiceAPIKey, KeyState]:
        """The stored key that ``key`` (``<prefix>.<secret>``) is, and its state.

        ``DoesNotExist`` unless both the prefix and the secret match: the state of a key is told
        only to whoever holds all of it. A key both revoked and expired is ``REVOKED``.
        """
        prefix, _, _ = key.partition(".")
        record = cast(ServiceAPIKey, self.get(prefix=prefix))
        if not record.is_valid(key):
            raise ServiceAPIKey.DoesNotExist("Key is not valid.")
        if record.revoked:
            return record, KeyState.REVOKED
        if record.has_expired:
            return record, KeyState.EXPIRED
        return record, KeyState.USABLE


class ServiceAPIKey(AbstractAPIKey):
    """An API key with scopes. Read is implied; ``can_write`` and ``can_reveal`` are granted.

    Only a hash of the key is stored (djangorestframework-api-key: prefix + hashed key); the key
    itself is shown once, when created by ``configsync.services.api_keys.api_key_create`` (the
    CLI's ``apikey create`` and the admin's add page both call it). ``expiry_date`` (optional)
    and ``revoked`` (final) end its use; authentication answers 401 naming which.
    """

    objects = ServiceAPIKeyManager()  # type: ignore[misc]

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
        permissions = [
            ("grant_reveal_serviceapikey", "Can give an API key the reveal scope"),
        ]

    @property
    def state(self) -> KeyState:
        """Usable, revoked or expired (now)."""
        if self.revoked:
            return KeyState.REVOKED
        if self.has_expired:
            return KeyState.EXPIRED
        return KeyState.USABLE

    @property
    def scopes(self) -> list[str]:
        """``read`` plus the granted scopes, in that order."""
        return (
            ["read"]
            + (["write"] if self.can_write else [])
            + (["reveal"] if self.can_reveal else [])
        )
