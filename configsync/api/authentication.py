"""API-key authentication: ``Authorization: Api-Key <key>`` against hashed ``ServiceAPIKey``."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from configsync.models import ServiceAPIKey
from configsync.models.api_key import KeyState

KEYWORD = "Api-Key"

INVALID = "Invalid API key."
REVOKED = "API key revoked."
EXPIRED = "API key expired."
"""The 401 details: unknown or wrong, revoked, expired. Revoked and expired are told only to a
caller presenting the whole key (prefix and secret); no message ever holds any part of it."""


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """``request.user`` of a call authenticated with an API key (not a Django user)."""

    name: str
    prefix: str
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def pk(self) -> str:
        return f"api-key:{self.prefix}"

    @property
    def username(self) -> str:
        return f"api-key:{self.name} ({self.prefix})"

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates ``Authorization: Api-Key <prefix>.<secret>``; ``request.auth`` is the key.

    No header: not this scheme (``None``). A wrong key: 401 "Invalid API key."; a revoked one:
    401 "API key revoked."; an expired one: 401 "API key expired.". Being first in
    ``DEFAULT_AUTHENTICATION_CLASSES`` also makes unauthenticated requests answer 401 (with
    ``WWW-Authenticate: Api-Key``) rather than 403.
    """

    # Every local of this frame and of the frames it calls holds (part of) the presented key:
    # hidden from error reports (``configsync.debug`` honours this whatever DEBUG says).
    @method_decorator(sensitive_variables())
    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ServiceAPIKey] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid Api-Key header: use 'Api-Key <key>'.")
        try:
            key = parts[1].decode()
        except UnicodeError:
            raise AuthenticationFailed(INVALID) from None
        try:
            record, state = ServiceAPIKey.objects.check_key(key)
        except ServiceAPIKey.DoesNotExist:
            raise AuthenticationFailed(INVALID) from None
        if state is not KeyState.USABLE:
            raise AuthenticationFailed(REVOKED if state is KeyState.REVOKED else EXPIRED)
        return ApiKeyPrincipal(name=record.name, prefix=record.prefix), record

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the API-key scheme in the OpenAPI schema."""

    target_class = "configsync.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` as printed by `configsync apikey create`.",
        }
