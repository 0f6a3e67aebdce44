"""REST throughput: the config API against a plain DRF retrieve view (``python -m bench rest``).

Prints, measured in one run on the same Django and database (no assertions): requests per
second, p50 and p99 of sequential ``GET`` requests for one setting through

* ``/api/v1/configs/system/{key}/`` (natural-key lookup, typed value, masking, ETag; a retrieve
  without reveal is served from the in-process lookup cache),
* the peer of the goal: a plain ``RetrieveAPIView`` + ``ModelSerializer`` of the same model
  (``bench._urls``) paying the same authentication, permission and throttling defaults as ours
  (the cached API-key verification and the one-call Redis throttle included), and
* for reference, the same plain view with authentication and throttling as they were before
  issue 14 (a query per key, DRF's two-round-trip throttle: ``bench._urls``),

all authenticated with the same API key. Requests go through Django's WSGI handler in-process
(the test client), so the figures are the framework's cost without a network or a server in
front. Rounds alternate between the views so they share the machine's noise.

Runs itself in a subprocess under ``bench._settings``; the child prints the table and one
``RESULT`` line of JSON, from which the parent records the goal rows (``bench._report``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

REQUESTS = 2_000
WARMUP = 100
ROUNDS = 10
RESULT = "RESULT "
RATIO_GOAL = 2.0
P99_GOAL_MS = 5.0

VIEWS = [
    ("ours", "configsync /api/v1/configs/system/{key}/", "/api/v1/configs/system/BENCH_VALUE/"),
    ("plain", "plain DRF RetrieveAPIView (same auth+throttle)", "/bench/plain/BENCH_VALUE/"),
    ("legacy", "plain DRF, auth+throttle before issue 14", "/bench/plain-legacy/BENCH_VALUE/"),
]


def _measure_interleaved(
    client: Any, urls: list[str], headers: dict[str, str]
) -> list[list[float]]:
    """Per URL, the sorted request times (s); rounds alternate between URLs to share the noise."""
    for url in urls:
        for _ in range(WARMUP):
            assert client.get(url, headers=headers).status_code == 200
    samples: dict[str, list[float]] = {url: [] for url in urls}
    for _ in range(ROUNDS):
        for url in urls:
            for _ in range(REQUESTS // ROUNDS):
                t0 = time.perf_counter()
                response = client.get(url, headers=headers)
                samples[url].append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")
    return [sorted(samples[url]) for url in urls]


def _figures(times: list[float]) -> dict[str, float]:
    return {
        "rps": len(times) / sum(times),
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
    }


def run() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0, interactive=False)
    from configsync.services.api_keys import api_key_create
    from configsync.services.system_config import system_config_set

    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    redis = "yes" if os.environ.get("REDIS_URL") else "no"
    print(f"database: {db}; redis (cache, throttle): {redis}; {REQUESTS} sequential GETs each")
    system_config_set(key="BENCH_VALUE", value="https://example.com/v1", value_type="url")
    _, key = api_key_create(name="bench-rest")
    headers = {"Authorization": f"Api-Key {key}"}
    client = Client(HTTP_HOST="localhost")
    measured = _measure_interleaved(client, [url for _, _, url in VIEWS], headers)
    results = {name: _figures(times) for (name, _, _), times in zip(VIEWS, measured, strict=True)}
    ours = results["ours"]["rps"]
    print(f"\n{'view':<50}{'req/s':>9}{'p50':>10}{'p99':>10}{'ours is':>10}")
    for name, label, _ in VIEWS:
        row = results[name]
        print(
            f"{label:<50}{row['rps']:>9,.0f}{row['p50_ms']:>8.2f}ms{row['p99_ms']:>8.2f}ms"
            f"{ours / row['rps']:>9.2f}x"
        )
    print(RESULT + json.dumps({"database": db, "redis": redis, **results}), flush=True)


def main() -> None:
    from bench._report import goal

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench._settings"}
    child = subprocess.run(
        [sys.executable, "-m", "bench.rest"], env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    result: dict[str, Any] = {}
    for line in child.stdout.splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT) :])
        else:
            print(line, flush=True)
    ours, plain = result["ours"], result["plain"]
    ratio = ours["rps"] / plain["rps"]
    where = f"{result['database']}, redis {result['redis']}"
    goal(
        area="rest",
        what=f"REST GET of one setting vs plain DRF retrieve, same auth+throttle ({where})",
        measured=f"{ratio:.2f}x ({ours['rps']:,.0f} vs {plain['rps']:,.0f} req/s)",
        target=f">= {RATIO_GOAL:g}x",
        met=ratio >= RATIO_GOAL,
    )
    goal(
        area="rest",
        what=f"REST GET of one setting, p99 ({where})",
        measured=f"{ours['p99_ms']:.2f} ms (p50 {ours['p50_ms']:.2f} ms)",
        target=f"<= {P99_GOAL_MS:g} ms",
        met=ours["p99_ms"] <= P99_GOAL_MS,
    )


if __name__ == "__main__":
    if os.environ.get("DJANGO_SETTINGS_MODULE") == "bench._settings":
        run()
    else:
        main()
