"""API-key authentication: ``Authorization: Api-Key <key>`` against hashed ``ServiceAPIKey``.

A verified key is remembered in this process's lookup cache (``configsync.lookup``, namespace
``api-key``, by prefix): the stored record, hash included — never the key itself. A warm request
checks the presented key against that hash (one SHA-512, the package's own verification) and
the record's state (revoked, expired: evaluated now), and touches no database. Every change of
any key (create, change, revoke, delete: ``post_save``/``post_delete``) clears the cache here at
once and, on commit, in every other process by the lookup cache's version counter (pub/sub with
Redis, else within ``CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS``). Only a usable key that was
presented whole is cached, so entries are bounded by the usable keys in the database; a wrong,
unknown, revoked or expired key costs the same query as without a cache and leaves nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from configsync.lookup import lookup_cache
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


API_KEY_NAMESPACE = "api-key"
"""The lookup cache's namespace of verified API keys (keyed by prefix)."""


@sensitive_variables()
def usable_key(key: str) -> ServiceAPIKey:
    """The stored record of ``key`` (one query) if it is usable; else ``AuthenticationFailed``
    with the 401 detail (invalid, revoked, expired)."""
    try:
        record, state = ServiceAPIKey.objects.check_key(key)
    except ServiceAPIKey.DoesNotExist:
        raise AuthenticationFailed(INVALID) from None
    if state is not KeyState.USABLE:
        raise AuthenticationFailed(REVOKED if state is KeyState.REVOKED else EXPIRED)
    return record


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
        prefix, _, _ = key.partition(".")
        record = lookup_cache.get(API_KEY_NAMESPACE, prefix, lambda _prefix: usable_key(key))
        if record.state is not KeyState.USABLE or not record.is_valid(key):
            # Expired since it was cached, or another secret under a cached prefix: decide as
            # an uncached request would (and cache nothing).
            record = usable_key(key)
        # A copy: request.auth must not be an object shared with other requests and threads.
        return ApiKeyPrincipal(name=record.name, prefix=record.prefix), copy.copy(record)

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
