"""The request edge: text that cannot be stored is refused before any view sees it.

``EdgeMiddleware`` answers ``400`` with the reason when the path, a query parameter (name or
value) or a request header holds text no supported database can store (a NUL character, which
PostgreSQL refuses — ``?category=a%00b`` was a 500 — or a lone surrogate), using the same predicate
as the API's body parsers (``configsync.api.parsers.storable_text_problem``). API paths answer JSON
``{"detail": ...}``, others plain text. The offending text is never echoed.

Put it first in ``MIDDLEWARE``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from rest_framework.request import Request

from configsync.actor import ADMIN, API, PEER, Acting, acting_lazily
from configsync.api.parsers import storable_text_problem


def request_edge_problem(request: HttpRequest) -> str | None:
    """Why ``request``'s path, query or headers cannot be accepted, or ``None``."""
    problem = storable_text_problem(request.path_info)
    if problem:
        return f"Path: {problem}"
    for name, values in request.GET.lists():
        for text in (name, *values):
            problem = storable_text_problem(text)
            if problem:
                return f"Query parameter: {problem}"
    for name, value in request.META.items():
        if (name.startswith("HTTP_") or name == "CONTENT_TYPE") and isinstance(value, str):
            problem = storable_text_problem(value)
            if problem:
                return f"Header: {problem}"
    return None


class EdgeMiddleware:
    """Refuses unstorable text in the path, query and headers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = request_edge_problem(request)
        if problem is not None:
            if request.path_info.startswith("/api/"):
                return JsonResponse({"detail": problem}, status=400)
            return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class ActorMiddleware:
    """Names the caller of every request for the audit trail (``configsync.actor``).

    The actor is resolved when a change asks for it, not here: DRF authenticates API keys inside
    the view (and sets ``request.auth`` on the Django request too). Admin pages are ``via="admin"``,
    everything else ``via="api"``. Put it after ``AuthenticationMiddleware``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with acting_lazily(lambda: request_acting(request)):
            return self.get_response(request)


def request_acting(request: HttpRequest | Request) -> Acting:
    """Who made ``request`` (``user:<name>``, ``api-key:<name> (<prefix>)``, ``anonymous``) and
    through which entry point (``admin`` or ``api``)."""
    from configsync.models import ServiceAPIKey

    via = ADMIN if request.path_info.startswith("/admin/") else API
    auth = getattr(request, "auth", None)
    if isinstance(auth, ServiceAPIKey):
        return Acting(actor=f"api-key:{auth.name} ({auth.prefix})", via=via)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if not hasattr(user, "get_username"):  # a signed peer (SyncPeerUser): names itself
            return Acting(actor=str(user.pk), via=PEER)
        return Acting(actor=f"user:{user.get_username()}", via=via)
    return Acting(actor="anonymous", via=via)
