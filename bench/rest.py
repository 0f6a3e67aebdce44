"""REST throughput: the config API against a plain DRF retrieve view (``python -m bench rest``).

Prints, measured in one run on the same Django and database (no assertions): requests per
second, p50 and p99 of sequential ``GET`` requests for one setting through

* ``/api/v1/configs/system/{key}/`` (natural-key lookup, typed value, masking, ETag), and
* a plain ``RetrieveAPIView`` + ``ModelSerializer`` of the same model (``bench._urls``),

both authenticated with the same API key and paying the same authentication, permission and
throttling defaults. Requests go through Django's WSGI handler in-process (the test client), so
the figures are the framework's cost without a network or a server in front. Runs itself in a
subprocess under ``bench._settings``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

REQUESTS = 2_000
WARMUP = 100
ROUNDS = 10


def _measure_interleaved(
    client, urls: list[str], headers: dict[str, str]
) -> list[tuple[float, float, float]]:  # type: ignore[no-untyped-def]
    """Per URL: (requests/s, p50 s, p99 s); rounds alternate between URLs to share the noise."""
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
    results = []
    for url in urls:
        times = sorted(samples[url])
        p99 = times[int(len(times) * 0.99) - 1]
        results.append((len(times) / sum(times), statistics.median(times), p99))
    return results


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
    rows = [
        ("configsync /api/v1/configs/system/{key}/", "/api/v1/configs/system/BENCH_VALUE/"),
        ("plain DRF RetrieveAPIView", "/bench/plain/BENCH_VALUE/"),
    ]
    measured = _measure_interleaved(client, [url for _, url in rows], headers)
    results = {label: figures for (label, _), figures in zip(rows, measured, strict=True)}
    ours = results[rows[0][0]]
    print(f"\n{'view':<44}{'req/s':>10}{'p50':>11}{'p99':>11}{'req/s vs ours':>15}")
    for label, (rps, p50, p99) in results.items():
        print(
            f"{label:<44}{rps:>10,.0f}{p50 * 1000:>9.2f}ms{p99 * 1000:>9.2f}ms"
            f"{rps / ours[0]:>14.2f}x"
        )


def main() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench._settings"}
    subprocess.run([sys.executable, "-m", "bench.rest"], env=env, check=True)


if __name__ == "__main__":
    if os.environ.get("DJANGO_SETTINGS_MODULE") == "bench._settings":
        run()
    else:
        main()
