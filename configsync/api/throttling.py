"""Rate limits on every endpoint, per caller: an API key, a user, or the client address.

Rates come from ``REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']`` (``anon`` for unauthenticated
callers, ``user`` for users and API keys; set by ``CONFIGSYNC_THROTTLE_ANON`` and
``CONFIGSYNC_THROTTLE_USER``) and are read on every request, so ``override_settings`` works.
``REST_FRAMEWORK_THROTTLE_DISABLED = True`` (the test settings) turns throttling off.

DRF's sliding window: a request is allowed when fewer than ``n`` requests were allowed in the
last ``duration`` seconds; a refused request is not counted; the 429 carries ``Retry-After``
(DRF's ``wait()``). When the default cache is Redis (``REDIS_URL``), the window is a Redis list
of timestamps (newest first) checked and updated by one Lua script: one round trip per request,
atomic across processes, and without reading the whole window back (DRF's ``SimpleRateThrottle``
reads and writes the pickled window: two round trips, racy). Any other cache backend takes
DRF's own path.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from redis import Redis
from redis.commands.core import Script
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from configsync.models import ServiceAPIKey

WINDOW_SCRIPT = """
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[2])
local oldest = redis.call('LINDEX', KEYS[1], -1)
while oldest and tonumber(oldest) <= cutoff do
  redis.call('RPOP', KEYS[1])
  oldest = redis.call('LINDEX', KEYS[1], -1)
end
local count = redis.call('LLEN', KEYS[1])
if count >= tonumber(ARGV[3]) then
  return {0, count, oldest or false}
end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {1, count + 1, oldest or ARGV[1]}
"""
"""KEYS[1]: the window; ARGV: now, duration (whole seconds, also the list's expiry), allowed
requests. Returns {allowed (1/0), requests in the window (the new one included when allowed),
the oldest timestamp in the window (as stored)}. Timestamps travel as text (Lua numbers would be
truncated to integers on the way back)."""

_script = Script(None, WINDOW_SCRIPT.encode())  # type: ignore[arg-type]
_clients: WeakKeyDictionary[Any, Redis] = WeakKeyDictionary()


def _redis_client(backend: RedisCache) -> Redis:
    """A client on the cache's own connection pool, made once per cache connection (Django's
    ``get_client`` builds a new ``Redis`` object, and its table of callbacks, on every call)."""
    pools = backend._cache  # one per cache connection (thread); owns the connection pools
    client = _clients.get(pools)
    if client is None:
        client = _clients[pools] = pools.get_client(write=True)
    return client


class CallerRateThrottle(SimpleRateThrottle):
    """One bucket per caller across the whole API."""

    def __init__(self) -> None:
        # The rate is resolved per request in allow_request, not frozen at import.
        self.window: tuple[int, int, int, float | None] | None = None
        """On the Redis path: (allowed requests, duration, requests in the window, oldest)."""

    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(str(self.scope))
        return str(rate) if rate else None

    def allow_request(self, request: Request, view: Any) -> bool:
        if getattr(settings, "REST_FRAMEWORK_THROTTLE_DISABLED", False):
            return True
        self.scope = "user" if request.user and request.user.is_authenticated else "anon"
        self.rate = self.get_rate()
        limit, duration = self.num_requests, self.duration = self.parse_rate(self.rate)
        backend = caches[DEFAULT_CACHE_ALIAS]
        if limit is None or duration is None or not isinstance(backend, RedisCache):
            return super().allow_request(request, view)
        self.key = self.get_cache_key(request, view)
        self.now = self.timer()
        # A key of its own: the window is a Redis list, not a cache value DRF's path could read.
        key = backend.make_and_validate_key(f"{self.key}:window")
        allowed, count, oldest = _script(
            keys=[key], args=[repr(self.now), duration, limit], client=_redis_client(backend)
        )
        self.window = (limit, duration, int(count), float(oldest) if oldest else None)
        return bool(allowed)

    def wait(self) -> float | None:
        """Seconds until the next request may be allowed: DRF's formula, over the window the
        script reported on the Redis path."""
        if self.window is None:
            return super().wait()
        limit, duration, count, oldest = self.window
        remaining = duration - (self.now - oldest) if oldest is not None else duration
        available = limit - count + 1
        if available <= 0:
            return None
        return remaining / float(available)

    def get_cache_key(self, request: Request, view: Any) -> str:
        if isinstance(request.auth, ServiceAPIKey):
            ident = f"key-{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return f"throttle_{self.scope}_{ident}"
