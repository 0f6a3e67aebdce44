"""``/`` (the landing page) and ``/api/v1/redoc/`` (the API reference, Redoc).

Thin: the landing page reads this node's id and deployment mode through the selectors and links
to everything else. It is open (like ``/api/v1/health``) and shows nothing secret: no value, key,
URL of a peer or backend, or credential — only what a peer or an operator already sees.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularRedocView
from rest_framework.request import Request
from rest_framework.response import Response

from configsync.api.permissions import HasReadScope
from configsync.replication.selectors.mode import deployment_mode
from configsync.selectors.node import NodeIdentityMissing, node_id


def _version() -> str:
    try:
        return metadata.version("configsync")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return ""


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """``GET /``: this node's id and deployment mode (and, to staff, its version: a version helps
    an attacker pick exploits), and links to the admin, the API docs, health, status and
    metrics. Works signed out; never reads a secret."""
    try:
        this_node: str | None = node_id()
    except NodeIdentityMissing:
        this_node = None  # the page says to run migrate
    context: dict[str, Any] = {
        "node_id": this_node,
        "mode": deployment_mode(),
        "version": _version() if getattr(request.user, "is_staff", False) else "",
    }
    return render(request, "configsync/landing.html", context)


REDOC_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",  # the inline Redoc.init
        "style-src 'self' 'unsafe-inline'",  # Redoc's styled-components
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",  # Redoc's search index
        "connect-src 'self'",  # the schema
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)
"""Redoc's bundle draws Redocly's logo from their CDN in its footer, with no option to turn it
off: the page's policy keeps every load on this node."""


class ApiRedocView(SpectacularRedocView):
    """The Redoc reference of the API, from this node's static files (drf-spectacular-sidecar).

    Same access as the schema it renders (the read scope). Its template drops the stock one's
    Google Fonts links, and its Content-Security-Policy blocks the one image the bundle would load
    from another host, so the page loads nothing from anywhere but this node.
    """

    permission_classes = [HasReadScope]
    # No OPTIONS metadata: the page renders only its template (as the Swagger UI page).
    metadata_class = None
    template_name = "configsync/redoc.html"
    url_name = "api-schema"

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = REDOC_CONTENT_SECURITY_POLICY
        return response
