"""Rate limits on every endpoint, per caller: an API key, a user, or the client address.

Rates come from ``REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']`` (``anon`` for unauthenticated
callers, ``user`` for users and API keys; set by ``CONFIGSYNC_THROTTLE_ANON`` and
``CONFIGSYNC_THROTTLE_USER``) and are read on every request, so ``override_settings`` works.
``REST_FRAMEWORK_THROTTLE_DISABLED = True`` (the test settings) turns throttling off.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from configsync.models import ServiceAPIKey


class CallerRateThrottle(SimpleRateThrottle):
    """One bucket per caller across the whole API."""

    def __init__(self) -> None:
        # The rate is resolved per request in allow_request, not frozen at import.
        pass

    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(str(self.scope))
        return str(rate) if rate else None

    def allow_request(self, request: Request, view: Any) -> bool:
        if getattr(settings, "REST_FRAMEWORK_THROTTLE_DISABLED", False):
            return True
        self.scope = "user" if request.user and request.user.is_authenticated else "anon"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        if isinstance(request.auth, ServiceAPIKey):
            ident = f"key-{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return f"throttle_{self.scope}_{ident}"
