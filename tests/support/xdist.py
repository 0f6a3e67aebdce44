"""One Redis DB and one var/ folder per pytest-xdist worker, so workers share no state.

Under ``pytest -n N`` each worker is its own process with its own test database
(pytest-django suffixes the name with the worker id), but the settings would give every worker
the same Redis DB (cache, named locks, the lookup cache's version key and its pub/sub channel,
the broker) and the same var/ folder (file locks, the embedded broker's folders). The root
conftest calls :func:`isolate_worker` before any test runs; without xdist it does nothing.

Worker ``gwN`` uses the N-th number of ``TEST_REDIS_DBS`` (comma-separated) when that is set,
else ``REDIS_URL``'s DB number plus N; and ``<var>/xdist/gwN`` as its var/ folder. The worker's
``REDIS_URL`` is also put in the environment, so processes a test starts share its Redis DB.

The multi-node harness (the ``multinode`` package) reads its own environment: worker ``gwN`` of
``W`` gets the N-th of ``W`` equal slices of ``MULTINODE_REDIS_DBS`` (one Redis DB per node) and
``MULTINODE_DB_PREFIX`` ``<prefix>_gwN`` (its nodes' PostgreSQL databases), so clusters of two
workers never share a database or a Redis DB. A slice too small for the largest cluster
(:func:`nodes_max` nodes: 3, or ``CHAOS_NODES`` when larger) makes the multi-node tests fail with
the fix (:func:`multinode_shortfall`); the single-process tests do not need it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.test.signals import setting_changed

from multinode.cluster import redis_db_list


def nodes_max() -> int:
    """The most nodes a cluster of the multi-node pass has: 3 (``tests/multinode``), or the
    chaos harness's ``CHAOS_NODES`` when larger (``tests/chaos``): the Redis DBs each worker
    needs."""
    chaos = os.environ.get("CHAOS_NODES", "").strip()
    return max(3, int(chaos) if chaos.isdigit() else 0)


MULTINODE_NODES_MAX = nodes_max()
""":func:`nodes_max` when this module was imported (read again by :func:`multinode_shortfall`)."""


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


def worker_count() -> int:
    """How many pytest-xdist workers run the suite (1 without xdist)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)


def isolate_multinode(index: int, count: int) -> None:
    """Give worker ``index`` of ``count`` its slice of ``MULTINODE_REDIS_DBS`` and its own
    ``MULTINODE_DB_PREFIX`` (see the module docstring)."""
    dbs = redis_db_list()
    share = len(dbs) // count
    os.environ["MULTINODE_REDIS_DBS"] = ",".join(dbs[index * share : (index + 1) * share])
    test_db = os.environ.get("TEST_DATABASE_URL", "")
    prefix = os.environ.get("MULTINODE_DB_PREFIX", "") or urlsplit(test_db).path.lstrip("/")
    if prefix:
        os.environ["MULTINODE_DB_PREFIX"] = f"{prefix}_gw{index}"


def multinode_shortfall() -> str:
    """Why this process's share of ``MULTINODE_REDIS_DBS`` cannot hold every cluster of
    ``tests/multinode``; ``""`` when it can (or when the nodes use no Redis)."""
    dbs = redis_db_list()
    most = nodes_max()
    if not os.environ.get("REDIS_URL") or len(dbs) >= most:
        return ""
    workers = worker_count()
    return (
        f"this pytest-xdist worker's share of MULTINODE_REDIS_DBS is {len(dbs)} Redis DB(s), "
        f"and a cluster may have {most} nodes: with {workers} workers, list "
        f"{most * workers} DBs or more in MULTINODE_REDIS_DBS"
    )


def isolate_worker(settings: Any) -> None:
    """Point this xdist worker at its own Redis DB, var/ folder and multi-node databases and
    Redis DBs (no-op without xdist)."""
    index = worker_index()
    if index is None:
        return
    isolate_multinode(index, worker_count())
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
