"""In-process cache behind ``get_system_config`` and ``get_ai_config``, invalidated everywhere.

It also holds what the REST API reads most: the masked body and ETag of a retrieved setting or
provider (``configsync.api.views``) and verified API keys (``configsync.api.authentication``).

Why our own cache rather than Django's cache framework: a warm lookup must cost about a
dictionary lookup (no network, no pickling), and the values are decrypted plaintext (and API-key
hashes), which must never be written to a shared cache such as Redis.

How it stays current in every process (gunicorn and Celery workers, on every node):

* every committed change of ``SystemConfig``, ``AIProviderConfig`` or ``ServiceAPIKey`` clears
  this process's cache and, once per transaction after it commits, bumps a global version
  counter: a local write sends ``post_save``/``post_delete``; a replicated batch, whose rows may
  be written set-wise without ``save()``, sends one ``changes_applied`` after commit (it bumps
  once);
* with ``REDIS_URL`` the counter is a Redis key, and the bump is also published on a pub/sub
  channel; a daemon listener thread in each process clears its cache as soon as a message
  arrives (and whenever it (re)subscribes, since messages may have been missed);
* without Redis the counter is the single ``LookupVersion`` row in the database;
* in both modes each process compares the counter with the one it cached under at most every
  ``CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS`` (0.5 s), so a change is seen within one second even
  if a pub/sub message is lost; entries are also dropped after ``CONFIGSYNC_LOOKUP_MAX_AGE_SECONDS``
  as a last resort against a bump that never happened (a process killed between commit and bump).

Thread safety: the cache dict is replaced, never mutated in place by invalidation, and a value
loaded while an invalidation happened is not stored (generation check). After ``fork`` the
child starts with an empty cache and starts its own listener lazily on first use.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from prometheus_client import Counter

from configsync.conf import app_settings

logger = logging.getLogger(__name__)

MISSING: Any = object()
"""What a loader returns for a record that does not exist (cached, so misses are cheap too)."""

LOOKUPS = Counter(
    "configsync_lookups",
    "Lookups through the in-process cache of this process, by result (hit or miss).",
    labelnames=["result"],
    registry=None,  # exposed by configsync.metrics.registry
)
"""Process-local counters: each process counts its own lookups (``/metrics`` shows the serving
process's; a worker's are not visible there). Children bound once so a hit costs one add."""
_HIT = LOOKUPS.labels(result="hit")
_MISS = LOOKUPS.labels(result="miss")

VERSION_KEY = "configsync:lookup:version"
_MUTABLE = (dict, list)
_monotonic = time.monotonic
CHANNEL_PREFIX = "configsync:lookup:invalidate"


class VersionBackend(Protocol):
    def read(self) -> object: ...

    def bump(self) -> None: ...

    def listen(self, on_message: Callable[[], None], stop: threading.Event) -> None: ...


class DatabaseVersion:
    """The version counter as the ``LookupVersion`` row; no push notifications."""

    def read(self) -> object:
        from configsync.models import LookupVersion

        return LookupVersion.objects.filter(pk=1).values_list("counter", flat=True).first()

    def bump(self) -> None:
        from django.db.models import F

        from configsync.models import LookupVersion

        if not LookupVersion.objects.filter(pk=1).update(counter=F("counter") + 1):
            LookupVersion.objects.get_or_create(pk=1, defaults={"counter": 1})

    def listen(self, on_message: Callable[[], None], stop: threading.Event) -> None:
        return None


class RedisVersion:
    """The version counter as a Redis key; bumps are published on a per-database channel."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        # Pub/sub channels are global to a Redis server, whatever the database number.
        self.channel = f"{CHANNEL_PREFIX}:{db}"

    def read(self) -> object:
        return self.client.get(VERSION_KEY)

    def bump(self) -> None:
        pipe = self.client.pipeline()
        pipe.incr(VERSION_KEY)
        pipe.publish(self.channel, b"1")
        pipe.execute()

    def listen(self, on_message: Callable[[], None], stop: threading.Event) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=2, health_check_interval=30)
        while not stop.is_set():
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    # (Re)subscribed: messages may have been missed meanwhile, so clear too.
                    if message and message["type"] in ("subscribe", "message"):
                        on_message()
            except redis.RedisError as exc:
                logger.warning("lookup invalidation listener: %s; retrying", type(exc).__name__)
                on_message()
                stop.wait(1.0)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
        with contextlib.suppress(Exception):
            client.close()


class LookupCache:
    """A per-process cache of typed, decrypted lookups, keyed by ``(namespace, key)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Called at start and in a forked child: nothing inherited is trusted.
        self._lock = threading.Lock()
        self._data: dict[tuple[str, Hashable], Any] = {}
        self._generation = 0
        self._version: object = MISSING
        self._next_check = 0.0
        self._expires = 0.0
        self._pid = os.getpid()
        self._backend: VersionBackend | None = None
        self._backend_url: str | None = None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()

    # --- reads -----------------------------------------------------------------------------
    def get(
        self,
        namespace: str,
        key: Hashable,
        loader: Callable[[Hashable], Any],
        *,
        keep: Callable[[Any], bool] | None = None,
    ) -> Any:
        """The cached value of ``(namespace, key)``, loading it with ``loader(key)`` on a miss.

        ``loader`` returns the value, or ``MISSING`` when the record does not exist; an exception
        it raises propagates and nothing is cached. ``keep(value)``, when given, decides whether a
        loaded value is cached (e.g. not ``MISSING``, where callers could otherwise fill memory
        with keys of their choosing). Mutable values (dicts, lists) are returned as deep copies so
        callers cannot alter the cache.
        """
        if _monotonic() >= self._next_check:
            self._check()
        try:
            value = self._data[namespace, key]
            _HIT.inc()
        except KeyError:
            _MISS.inc()
            generation = self._generation
            value = loader(key)
            if generation == self._generation and (keep is None or keep(value)):
                self._data[namespace, key] = value
        if value.__class__ in _MUTABLE:
            return copy.deepcopy(value)
        return value

    def _check(self) -> None:
        """Compare the global version with ours (rate-limited); clear the cache when it moved."""
        lock = self._lock
        if not lock.acquire(blocking=False):
            return  # another thread is checking; serve from the cache meanwhile
        try:
            if os.getpid() != self._pid:
                self._reset()  # forked child without register_at_fork: start afresh
            now = time.monotonic()
            if now < self._next_check:
                return
            self._next_check = now + float(app_settings.LOOKUP_CHECK_INTERVAL_SECONDS)
            backend = self._ensure_backend()
            try:
                version = backend.read()
            except Exception as exc:  # database or Redis unreachable: do not trust the cache
                logger.warning(
                    "lookup version check failed (%s); cache cleared", type(exc).__name__
                )
                version = MISSING
            if version is MISSING or version != self._version or now >= self._expires:
                self.invalidate_local()
                self._version = version
                self._expires = now + float(app_settings.LOOKUP_MAX_AGE_SECONDS)
        finally:
            lock.release()

    def _ensure_backend(self) -> VersionBackend:
        url = getattr(settings, "REDIS_URL", "") or ""
        if self._backend is None or url != self._backend_url:
            self._stop.set()
            self._stop = threading.Event()
            self._backend = RedisVersion(url) if url else DatabaseVersion()
            self._backend_url = url
            self._listener = None
        if url and (self._listener is None or not self._listener.is_alive()):
            self._listener = threading.Thread(
                target=self._backend.listen,
                args=(self.invalidate_local, self._stop),
                name="configsync-lookup-invalidation",
                daemon=True,
            )
            self._listener.start()
        return self._backend

    # --- invalidation ----------------------------------------------------------------------
    def invalidate_local(self) -> None:
        """Forget every cached value in this process (cheap; other processes are not told)."""
        self._generation += 1
        self._data = {}

    def notify_change(self) -> None:
        """A change was committed: clear here and tell every other process (version + pub/sub)."""
        if os.getpid() != self._pid:
            self._reset()
        self.invalidate_local()
        try:
            self._ensure_backend().bump()
        except Exception as exc:
            # The change itself is committed; other processes still see it within the max age.
            logger.warning("lookup invalidation broadcast failed: %s", type(exc).__name__)
        self._next_check = 0.0

    def stop(self) -> None:
        """Stop the listener thread (tests and shutdown)."""
        self._stop.set()


lookup_cache = LookupCache()


class _Broadcast:
    """One pending ``notify_change`` of a transaction; remembers whether it has run."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self) -> None:
        self.done = True
        lookup_cache.notify_change()


def _on_model_change(sender: Any, **kwargs: Any) -> None:
    lookup_cache.invalidate_local()
    using = kwargs.get("using")
    connection = transaction.get_connection(using)
    # One broadcast per transaction: a batch of replicated changes bumps the version once.
    # Callbacks of a rolled-back savepoint leave run_on_commit, so a later change re-schedules.
    if connection.in_atomic_block and any(
        isinstance(entry[1], _Broadcast) and not entry[1].done for entry in connection.run_on_commit
    ):
        return
    transaction.on_commit(_Broadcast(), using=using, robust=True)


_WATCHED: set[str] = set()
"""Labels (``app_label.modelname``) whose changes invalidate lookups."""


def _on_changes_applied(sender: Any, *, changes: Any = (), **kwargs: Any) -> None:
    """A batch of replicated changes committed: one broadcast if it changed a watched model."""
    if any(change.model_label in _WATCHED for change in changes):
        lookup_cache.notify_change()


def invalidate_on_change(label: str) -> None:
    """Invalidate lookups in every process whenever a row of model ``label`` (``app.Model``) is
    saved or deleted, or changed by an applied replicated batch. An app whose values are read
    through ``lookup_cache`` calls it from its ``ready()`` (``providers`` does for
    ``AIProviderConfig``); calling it twice connects once."""
    from django.db.models.signals import post_delete, post_save

    from configsync.signals import changes_applied

    _WATCHED.add(label.lower())
    post_save.connect(_on_model_change, sender=label, dispatch_uid=f"lookup-save-{label}")
    post_delete.connect(_on_model_change, sender=label, dispatch_uid=f"lookup-del-{label}")
    changes_applied.connect(_on_changes_applied, dispatch_uid="lookup-changes-applied")


def signals_connect() -> None:
    """Connect the receivers that invalidate lookups (from ``ConfigsyncConfig.ready()``): a
    changed setting, and a created, changed, revoked or deleted API key (whose verification
    ``configsync.api.authentication`` caches here)."""
    invalidate_on_change("configsync.SystemConfig")
    invalidate_on_change("configsync.ServiceAPIKey")
