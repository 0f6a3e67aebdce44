"""Scopes of the REST API: read, write and reveal.

Admin users (``is_staff``, Django session) hold every scope. An API key holds read plus the
scopes it was created with (``can_write``, ``can_reveal``). Anyone else holds none.
"""

from __future__ import annotations

from typing import Any, Literal

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from configsync.models import ServiceAPIKey

Scope = Literal["read", "write", "reveal"]


def user_can_reveal(user: Any) -> bool:
    """Whether a Django user holds the reveal right: an active staff user (the admin and the
    API's session authentication share this rule). API keys hold it by ``can_reveal`` instead."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def request_has_scope(request: Request, scope: Scope) -> bool:
    """Whether the caller of ``request`` holds ``scope``."""
    user = request.user
    if not user or not user.is_authenticated:
        return False
    if isinstance(request.auth, ServiceAPIKey):
        if scope == "read":
            return True
        if scope == "write":
            return request.auth.can_write
        return request.auth.can_reveal
    return user_can_reveal(user)


def request_actor(request: Request) -> str:
    """Who made ``request``, for the audit: ``user:<name>`` or ``api-key:<name> (<prefix>)``."""
    from configsync.middleware import request_acting

    return request_acting(request).actor


def missing_scope_message(scope: Scope) -> str:
    """The 403 detail when the caller lacks ``scope``: ``This needs the write scope.``"""
    return f"This needs the {scope} scope."


class HasScope(BasePermission):
    """Read scope for safe methods, write scope otherwise (a view may set ``required_scope``;
    a subclass may fix ``scope``). A refusal's 403 names the missing scope."""

    scope: Scope | None = None
    message = "Your credentials do not grant the scope this needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        scope: Scope = (
            self.scope
            or getattr(view, "required_scope", None)
            or ("read" if request.method in SAFE_METHODS else "write")
        )
        # DRF reads ``message`` off this instance, which lives for one request.
        self.message = missing_scope_message(scope)
        return request_has_scope(request, scope)


class HasReadScope(BasePermission):
    """Read scope whatever the method (e.g. the schema and docs pages)."""

    message = missing_scope_message("read")

    def has_permission(self, request: Request, view: Any) -> bool:
        return request_has_scope(request, "read")
