"""One Redis DB and one var/ folder per pytest-xdist worker, so workers share no state.

Under ``pytest -n N`` each worker is its own process with its own test database
(pytest-django suffixes the name with the worker id), but the settings would give every worker
the same Redis DB (cache, named locks, the lookup cache's version key and its pub/sub channel,
the broker) and the same var/ folder (file locks, the embedded broker's folders). The root
conftest calls :func:`isolate_worker` before any test runs; without xdist it does nothing.

Worker ``gwN`` uses the N-th number of ``TEST_REDIS_DBS`` (comma-separated) when that is set,
else ``REDIS_URL``'s DB number plus N; and ``<var>/xdist/gwN`` as its var/ folder. The worker's
``REDIS_URL`` is also put in the environment, so processes a test starts share its Redis DB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.test.signals import setting_changed


def worker_index() -> int | None:
    """This process's pytest-xdist worker number (``gw3`` is 3), or ``None`` without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else None


def worker_redis_url(url: str, index: int) -> str:
    """``url`` with the Redis DB number of worker ``index`` (see the module docstring)."""
    parts = urlsplit(url)
    listed = [d.strip() for d in os.environ.get("TEST_REDIS_DBS", "").split(",") if d.strip()]
    if listed:
        if index >= len(listed):
            raise RuntimeError(
                f"TEST_REDIS_DBS names {len(listed)} Redis DB(s); xdist worker gw{index} needs "
                f"one more: list one DB per worker"
            )
        db = int(listed[index])
    else:
        db = int(parts.path.lstrip("/") or 0) + index
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def isolate_worker(settings: Any) -> None:
    """Point this xdist worker at its own Redis DB and var/ folder (no-op without xdist)."""
    index = worker_index()
    if index is None:
        return
    var_dir = Path(settings.CONFIGSYNC_VAR_DIR) / "xdist" / f"gw{index}"
    var_dir.mkdir(parents=True, exist_ok=True)
    settings.CONFIGSYNC_VAR_DIR = var_dir
    options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {})
    if "data_folder_in" in options:  # the embedded filesystem broker
        celery_dir = var_dir / "celery"
        for folder in ("broker", "control"):
            (celery_dir / folder).mkdir(parents=True, exist_ok=True)
        options.update(
            data_folder_in=str(celery_dir / "broker"),
            data_folder_out=str(celery_dir / "broker"),
            control_folder=str(celery_dir / "control"),
        )
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    redis_url = getattr(settings, "REDIS_URL", "") or ""
    if redis_url:
        mine = worker_redis_url(redis_url, index)
        settings.REDIS_URL = mine
        os.environ["REDIS_URL"] = mine
        caches = {name: dict(config) for name, config in settings.CACHES.items()}
        for config in caches.values():
            if config.get("LOCATION") == redis_url:
                config["LOCATION"] = mine
        settings.CACHES = caches
        # Django's own receiver drops cache connections made with the old location, if any.
        setting_changed.send(sender=type(settings), setting="CACHES", value=caches, enter=True)
        if getattr(settings, "CELERY_BROKER_URL", "") == redis_url:
            settings.CELERY_BROKER_URL = mine
