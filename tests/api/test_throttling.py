"""Throttling keeps DRF's semantics on both paths: one Lua call when the default cache is Redis,
DRF's own get/set on any other cache.

A sliding window of ``n`` requests per duration, per caller; a refused request is not counted;
the 429 says ``Retry-After`` (DRF's ``wait()``). The clock is DRF's own hook (``timer``), so the
window is walked without waiting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from configsync.api.throttling import CallerRateThrottle
from configsync.services.system_config import system_config_set

pytestmark = pytest.mark.django_db

URL = "/api/v1/configs/system/PLAIN/"
T0 = 1_800_000_000.0


@pytest.fixture(params=["redis", "locmem"])
def backend(request: pytest.FixtureRequest, settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "redis":
        if not os.environ.get("REDIS_URL"):
            pytest.skip("REDIS_URL is not set")
        assert type(caches["default"]).__name__ == "RedisCache"
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.REST_FRAMEWORK_THROTTLE_DISABLED = False
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/min", "user": "3/min"},
    }
    system_config_set(key="PLAIN", value="visible")
    caches["default"].clear()
    yield request.param
    caches["default"].clear()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    now = {"t": T0}
    monkeypatch.setattr(CallerRateThrottle, "timer", lambda self: now["t"])

    def at(seconds: float) -> None:
        now["t"] = T0 + seconds

    return at


def test_sliding_window_refusals_not_counted_and_retry_after(
    backend: str, clock: Callable[[float], None], client_for: Callable[[str], APIClient]
) -> None:
    reader = client_for("read")

    def get_at(seconds: float) -> tuple[int, str | None]:
        clock(seconds)
        response = reader.get(URL)
        return response.status_code, response.headers.get("Retry-After")

    assert [get_at(t) for t in (0, 1, 2)] == [(200, None)] * 3
    assert get_at(3) == (429, "57")  # the oldest (t=0) leaves the window at t=60
    assert get_at(58.5) == (429, "2")
    # Had the refusals been counted, the window would still be full at t=60.5.
    assert get_at(60.5) == (200, None)  # t=0 left the window
    assert get_at(60.7) == (429, "1")  # 1, 2 and 60.5 are in it
    assert get_at(61.5)[0] == 200  # t=1 left
    if backend == "redis":  # the one-call path ran: its window is a Redis list
        client = caches["default"]._cache.get_client(write=True)  # type: ignore[attr-defined]
        (window,) = client.keys("*throttle_user_key-*:window")
        assert client.type(window) == b"list" and client.llen(window) == 3


def test_buckets_are_per_caller(
    backend: str, clock: Callable[[float], None], client_for: Callable[[str], APIClient]
) -> None:
    first, second = client_for("read"), client_for("write")
    clock(0)
    assert [first.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert [second.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert first.get(URL).status_code == 429
