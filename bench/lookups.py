"""Lookup latency: ``get_system_config`` against django-constance (``python -m bench lookups``).

Prints, measured in one run on the same Django and database (no assertions):

1. warm and cold latency of ``get_system_config`` (warm: served from the in-process cache;
   cold: the cache cleared before every call, so a database read and typing);
2. the same for django-constance's database backend and its Redis backends (``RedisBackend``,
   ``CachingRedisBackend``; skipped without ``REDIS_URL``) through constance's ``config`` object
   (warm: repeated reads; cold: the read right after a write of the value);
3. the time from a committed change in another process until this process's
   ``get_system_config`` returns the new value: with the embedded default (database version
   check) and, when ``REDIS_URL`` is set, with Redis pub/sub.

Runs itself in a subprocess under ``bench._settings`` so it never shares Django with another
benchmark of the same ``python -m bench`` run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

WARM_CALLS = 200_000
COLD_CALLS = 2_000
INVALIDATION_ROUNDS = 8

WRITER = """
import sys, time, django
django.setup()
from configsync.services.system_config import system_config_set
for value in sys.argv[2:]:
    input()  # wait until the reader is ready for the next value
    system_config_set(key=sys.argv[1], value=value)
    print(repr(time.perf_counter()) + " " + repr(time.time()), flush=True)
"""


def _per_call_ns(fn: Callable[[], Any], calls: int, before_each: Callable[[], Any] | None = None):
    if before_each is None:
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        return (time.perf_counter_ns() - start) / calls
    samples = []
    for _ in range(calls):
        before_each()
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.fmean(samples)


def _fmt(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns < 10_000:
        return f"{ns:,.0f} ns"
    return f"{ns / 1000:,.1f} µs"


def _constance_config(backend_path: str) -> Any:
    from constance import utils
    from constance.base import Config

    config = Config()
    config._backend = utils.import_module_attr(backend_path)()
    return config


def _measure_constance(backend_path: str) -> tuple[float, float]:
    config = _constance_config(backend_path)
    config.BENCH_VALUE = "https://example.com/v1"
    config.BENCH_VALUE  # noqa: B018
    warm = _per_call_ns(lambda: config.BENCH_VALUE, WARM_CALLS // 100)
    counter = iter(range(10**9))

    def write() -> None:
        config.BENCH_VALUE = f"https://example.com/v{next(counter)}"

    cold = _per_call_ns(lambda: config.BENCH_VALUE, COLD_CALLS // 4, before_each=write)
    return warm, cold


def _invalidation_latency(redis_url: str) -> list[float]:
    """Seconds from a commit in a writer process to the new value in this process."""
    from django.conf import settings

    from configsync import get_system_config
    from configsync.lookup import lookup_cache

    settings.REDIS_URL = redis_url
    lookup_cache._reset()
    key = "BENCH_INVALIDATION"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    values = [f"v{i}-{time.time()}" for i in range(INVALIDATION_ROUNDS)]
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, key, *values],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin and writer.stdout
    latencies = []
    try:
        for value in values:
            get_system_config(key, default=None)
            time.sleep(0.3)  # let the listener settle; start from a warm cache
            writer.stdin.write("\n")
            writer.stdin.flush()
            deadline = time.monotonic() + 10
            while get_system_config(key, default=None) != value:
                if time.monotonic() > deadline:
                    raise RuntimeError("change not seen within 10 s")
            seen_wall = time.time()
            _, committed_wall = writer.stdout.readline().split()
            latencies.append(max(0.0, seen_wall - float(committed_wall)))
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)
    return latencies


def run() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from configsync import get_system_config
    from configsync.lookup import lookup_cache
    from configsync.services.system_config import system_config_set

    redis_url = os.environ.get("REDIS_URL", "")
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"database: {db}; redis: {'yes' if redis_url else 'no'}; Python {sys.version.split()[0]}")

    system_config_set(key="BENCH_VALUE", value="https://example.com/v1", value_type="url")
    get_system_config("BENCH_VALUE")
    ours_warm = _per_call_ns(lambda: get_system_config("BENCH_VALUE"), WARM_CALLS)
    ours_cold = _per_call_ns(
        lambda: get_system_config("BENCH_VALUE"),
        COLD_CALLS,
        before_each=lookup_cache.invalidate_local,
    )
    table = {"BENCH_VALUE": "https://example.com/v1"}
    dict_ns = _per_call_ns(lambda: table["BENCH_VALUE"], WARM_CALLS)
    rows: list[tuple[str, float | None, float | None]] = [
        ("python dict lookup (reference)", dict_ns, None),
        ("configsync get_system_config", ours_warm, ours_cold),
    ]
    rows.append(
        (
            "constance DatabaseBackend",
            *_measure_constance("constance.backends.database.DatabaseBackend"),
        )
    )
    for backend in ("RedisBackend", "CachingRedisBackend"):
        label = f"constance {backend}"
        if redis_url:
            rows.append((label, *_measure_constance(f"constance.backends.redisd.{backend}")))
        else:
            rows.append((label, None, None))

    print(f"\n{'lookup':<34}{'warm':>14}{'cold':>14}{'warm vs ours':>16}")
    for label, warm, cold in rows:
        ratio = f"{warm / ours_warm:,.2f}x" if warm else "skipped"
        print(f"{label:<34}{_fmt(warm):>14}{_fmt(cold):>14}{ratio:>16}")

    print("\ncross-process invalidation (commit in another process -> seen here):")
    for label, url in (("embedded (database version)", ""), ("redis pub/sub", redis_url)):
        if label.startswith("redis") and not redis_url:
            print(f"  {label:<30} skipped (REDIS_URL unset)")
            continue
        latencies = sorted(_invalidation_latency(url))
        print(
            f"  {label:<30} median {statistics.median(latencies) * 1000:,.1f} ms, "
            f"max {latencies[-1] * 1000:,.1f} ms over {len(latencies)} changes"
        )
    lookup_cache.stop()


def main() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench._settings"}
    subprocess.run([sys.executable, "-m", "bench.lookups"], env=env, check=True)


if __name__ == "__main__":
    if os.environ.get("DJANGO_SETTINGS_MODULE") == "bench._settings":
        run()
    else:
        main()
