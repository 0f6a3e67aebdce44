"""Celery tasks and the beat schedule (schedules are code, built from ``configsync.conf``).

Tasks take ids, reload, call a service, are safe to re-run and retry with backoff.

Replication scheduling:

- ``sync_all_peers`` (beat, every ``CONFIGSYNC_SYNC_INTERVAL_SECONDS``, and once when a worker
  starts) seeds peers from the settings, retries open quarantined changes, collects old
  tombstones and enqueues one ``sync_peer`` per enabled peer.
- ``sync_peer`` runs one cycle with one peer through the per-peer policy
  (``configsync.replication.services.sync.peer_sync``: the lock ``sync-peer-<id>``, Redis when
  configured, a file lock otherwise), so two beats, workers or ``configsync sync`` never run the
  same peer at once, and the holder keeps pushing while the peer's push flag is raised. A
  failure is logged with the peer's name and the reason, retried with exponential backoff and
  jitter a bounded number of times, and never propagates out of the task.
- ``push_on_commit`` (not a task: what the push-on-write receiver calls when a local change
  commits) raises each enabled peer's push flag and enqueues ``sync_peer(peer, pull=False)``
  for the peers whose flag it raised, so a write reaches them within milliseconds and a burst
  of writes is carried by a few pushes. Push-only cycles go to the ``push`` queue
  (``settings.celery.route_task``), which the Procfile's ``pusher`` consumes alone, so a push
  never waits behind a cycle of the beat. ``push_to_peers`` (a push-only cycle with every enabled
  peer) is kept for messages enqueued by an earlier release.
- ``sync_trigger`` (not a task: what ``POST /api/v1/sync/trigger`` calls) enqueues ``sync_peer``
  now. Whatever enqueues a task lives here, next to it: services never import tasks.
- ``nonces_prune`` (beat, every ``CONFIGSYNC_SIGNATURE_MAX_AGE_SECONDS``) forgets the nonces of
  signed sync requests too old to be accepted anyway.
- ``notify_data_callback`` tells ``CONFIGSYNC_DATA_CALLBACK_URL`` of one change (ids only).

Database connections are kept between tasks (``CONN_MAX_AGE``) and closed before and after each
task when broken or expired, as Django does around a request (``close_old_connections``).

Snapshots: ``snapshot_to_bucket`` (beat, every ``CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS`` when the
bucket is configured) writes this node's snapshot to the bucket in the R2 modes and applies the
retention (``configsync.snapshots.bucket``); no arguments, safe to re-run (one object per
interval), retried with backoff.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from celery.exceptions import Retry
from celery.signals import (
    beat_embedded_init,
    beat_init,
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_ready,
)
from celery.utils.time import get_exponential_backoff_interval
from django.db import close_old_connections, transaction

from configsync.conf import app_settings

if TYPE_CHECKING:
    from configsync.models import Peer

logger = logging.getLogger(__name__)

SYNC_MAX_RETRIES = 5
"""Retries of one failed cycle before waiting for the next beat."""
SYNC_BACKOFF_MAX_SECONDS = 300
CALLBACK_MAX_RETRIES = 8


def _backoff(retries: int) -> int:
    """Exponential backoff with full jitter: about 2, 4, 8 … seconds, capped."""
    return (
        int(
            get_exponential_backoff_interval(
                factor=2, retries=retries, maximum=SYNC_BACKOFF_MAX_SECONDS, full_jitter=True
            )
        )
        + 1
    )


def _enabled_peer_ids() -> list[int]:
    """The peers a cycle runs with: those whose transport the mode uses, none in ``LOCAL_ONLY``
    (read now: a switch with ``configsync mode set`` is followed by the next beat or write,
    without a restart)."""
    from configsync.replication.selectors.peers import peers_enabled_ids

    return peers_enabled_ids()


def _seed_peers() -> bool:
    """Seed peers from ``CONFIGSYNC_PEERS``; ``False`` (logged, never the URLs) when it failed."""
    from django.core.exceptions import ValidationError

    from configsync.replication.services.peers import peer_seed_from_settings

    try:
        peer_seed_from_settings()
    except ValidationError as exc:
        logger.error("peers not seeded from CONFIGSYNC_PEERS: %s", "; ".join(exc.messages))
        return False
    except Exception as exc:
        logger.error("peers not seeded from CONFIGSYNC_PEERS: %s", _reason(exc))
        return False
    return True


@shared_task(name="configsync.tasks.sync_all_peers", ignore_result=True)
def sync_all_peers() -> list[int]:
    """Beat: seed peers from the settings, collect tombstones, enqueue one cycle per peer.

    Returns the ids of the peers whose cycle was enqueued. Safe to re-run: a peer already being
    synced is skipped by ``sync_peer``'s lock. When the peers could not be seeded, tombstones
    are kept: a peer the setting names but the database lacks has not acknowledged them.
    """
    from configsync.replication.services.peers import tombstones_collect

    seeded = _seed_peers()
    _retry_quarantine()
    peer_ids = _enabled_peer_ids()
    for peer_id in peer_ids:
        transaction.on_commit(partial(sync_peer.delay, peer_id))
    if seeded:
        try:
            tombstones_collect()
        except Exception as exc:
            logger.error("tombstone collection failed: %s", _reason(exc))
    return peer_ids


def _retry_quarantine() -> None:
    """Retry open quarantined changes (a held future timestamp now within the bound, a key
    configured since); a failure is logged and left to the next beat."""
    from configsync.replication.services.quarantine import quarantine_retry

    try:
        quarantine_retry()
    except Exception as exc:
        logger.error("retrying quarantined changes failed: %s", _reason(exc))


@shared_task(
    bind=True,
    name="configsync.tasks.sync_peer",
    ignore_result=True,
    max_retries=SYNC_MAX_RETRIES,
    acks_late=True,
)
def sync_peer(self: Task, peer_id: int, pull: bool = True, push: bool = True) -> bool:
    """One cycle (pull, push or both) with the peer ``peer_id``, then pushes while its push flag
    is raised; ``True`` when it ran and succeeded.

    Skips quietly when the peer is gone, disabled, not used by this node's deployment mode (read
    now: a task enqueued before a switch follows the new mode), or already being synced by
    another worker (which pushes whatever is pending when it releases the peer). Failures are
    retried with backoff and end, after ``SYNC_MAX_RETRIES``, as a logged error: the next beat
    tries again.
    """
    from configsync.replication.services.cycle import SyncCycleError, SyncSkipped
    from configsync.replication.services.sync import peer_sync, sync_summary

    mode = "full" if pull and push else ("pull" if pull else "push")
    try:
        result = peer_sync(peer_id=peer_id, pull=pull, push=push, enabled_only=True)
    except SyncSkipped as exc:
        logger.info("sync skipped: %s", exc)
        return False
    except Exception as exc:
        name = exc.result.peer if isinstance(exc, SyncCycleError) else str(peer_id)
        reason = _reason(exc)
        if self.request.retries >= SYNC_MAX_RETRIES:
            logger.error(
                "sync (%s) with peer %s failed, giving up until the next beat: %s",
                mode,
                name,
                reason,
            )
            return False
        retry_countdown = _backoff(self.request.retries)
        logger.warning(
            "sync (%s) with peer %s failed (retry %d in %ds): %s",
            mode,
            name,
            self.request.retries + 1,
            retry_countdown,
            reason,
            exc_info=not _is_transport_error(exc),
        )
        try:
            raise self.retry(countdown=retry_countdown)
        except Retry:
            raise
        except Exception:
            # The broker refused the retry: the next beat (or write) tries again.
            logger.warning("could not schedule a retry of the sync with peer %s", name)
            return False
    if result is None:
        logger.info("sync with peer %s skipped: another cycle holds it", peer_id)
        return False
    logger.info("sync (%s) with peer %s done: %s", mode, result.peer, sync_summary(result))
    return True


def push_on_commit() -> list[int]:
    """A local change committed: push it to every enabled peer now; the ids of the peers whose
    push was enqueued.

    Raises each peer's push flag and enqueues ``sync_peer(peer, pull=False)`` only when the flag
    was not raised yet: a raised flag means a push is queued, or a pusher holds the peer and
    will see the flag when it releases it (``configsync.replication.services.sync``). Never
    raises (it runs after the writer's commit): a failure is logged and the change waits in the
    feed for the next beat; a message the broker refused lowers the flag again.
    """
    from configsync.replication.services.sync import push_flag_raise, push_flag_take

    enqueued: list[int] = []
    try:
        peer_ids = _enabled_peer_ids()
        for peer_id in peer_ids:
            if not push_flag_raise(peer_id):
                continue
            try:
                sync_peer.apply_async(args=[peer_id], kwargs={"pull": False})
            except Exception:
                push_flag_take(peer_id)  # the next write asks again
                raise
            enqueued.append(peer_id)
    except Exception as exc:
        logger.warning(
            "push on write not enqueued (the next beat carries it): %s", type(exc).__name__
        )
    return enqueued


def sync_trigger(*, peer_name: str | None = None) -> list[Peer]:
    """Enqueue a full-duplex cycle now with ``peer_name``, or with every enabled peer.

    Returns the peers whose cycle is enqueued (after the current transaction commits).
    Raises ``UnknownPeerError`` when ``peer_name`` names no peer; a disabled peer named
    explicitly is not enqueued (empty list).
    """
    from configsync.replication.selectors.peers import peers_to_sync

    selected = peers_to_sync(peer_name=peer_name)
    for peer in selected:
        transaction.on_commit(partial(sync_peer.delay, peer.pk))
    return selected


@shared_task(name="configsync.tasks.push_to_peers", ignore_result=True)
def push_to_peers() -> list[int]:
    """Push-on-write: enqueue a push-only cycle with every enabled peer; their ids."""
    _seed_peers()
    peer_ids = _enabled_peer_ids()
    for peer_id in peer_ids:
        transaction.on_commit(partial(sync_peer.delay, peer_id, pull=False))
    return peer_ids


@shared_task(name="configsync.tasks.nonces_prune", ignore_result=True)
def nonces_prune() -> int:
    """Beat: forget the nonces of signed sync requests too old to be accepted; how many."""
    from configsync.replication.signing import nonces_prune as prune

    return prune()


@shared_task(
    bind=True,
    name="configsync.tasks.notify_data_callback",
    ignore_result=True,
    max_retries=CALLBACK_MAX_RETRIES,
)
def notify_data_callback(
    self: Task, model_label: str, natural_key: str, seq: int | None, deleted: bool
) -> bool:
    """POST one change's ids to ``CONFIGSYNC_DATA_CALLBACK_URL``; ``True`` when delivered.

    The body is ``{"event": "change", "node_id", "model", "natural_key", "seq", "deleted"}``:
    ids, never values. A non-2xx answer or a network error is retried with backoff; after
    ``CALLBACK_MAX_RETRIES`` the change is logged as undelivered (the callback is advisory).
    """
    from configsync.replication.services.callbacks import data_callback_send

    url = app_settings.DATA_CALLBACK_URL
    if not url:
        return False
    try:
        data_callback_send(
            url=url, model_label=model_label, natural_key=natural_key, seq=seq, deleted=deleted
        )
    except Exception as exc:
        if self.request.retries >= CALLBACK_MAX_RETRIES:
            logger.error(
                "data callback for %s %s undelivered: %s", model_label, natural_key, _reason(exc)
            )
            return False
        countdown = _backoff(self.request.retries)
        logger.warning(
            "data callback for %s %s failed (retry in %ds): %s",
            model_label,
            natural_key,
            countdown,
            _reason(exc),
        )
        raise self.retry(countdown=countdown, max_retries=CALLBACK_MAX_RETRIES + 1) from None
    return True


@shared_task(
    bind=True,
    name="configsync.tasks.env_sync",
    ignore_result=True,
    max_retries=SYNC_MAX_RETRIES,
)
def env_sync(self: Task) -> bool:
    """The .env bridge on ``CONFIGSYNC_ENV_FILE`` (beat, and after each committed change).

    Takes no arguments and holds the file's lock, so it is safe to re-run or to race the CLI. A
    run that found the lock busy or the file changing under it is retried with backoff; a
    malformed or unreadable file is logged (line numbers, never values) and left to the next beat.
    """
    from configsync.envbridge.errors import EnvBridgeError, EnvFileChanged, EnvLockTimeout
    from configsync.envbridge.service import env_sync_scheduled

    try:
        report = env_sync_scheduled()
    except (EnvFileChanged, EnvLockTimeout) as exc:
        if self.request.retries >= SYNC_MAX_RETRIES:
            logger.error("env sync gave up until the next beat: %s", exc)
            return False
        raise self.retry(countdown=_backoff(self.request.retries)) from None
    except EnvBridgeError as exc:
        logger.error("env sync failed, nothing changed: %s", exc)
        return False
    if report is not None and report.skipped:
        logger.warning(
            "env sync skipped %d variable(s): %s",
            len(report.skipped),
            "; ".join(str(s) for s in report.skipped),
        )
    return report is not None


SNAPSHOT_MAX_RETRIES = 5


@shared_task(
    bind=True,
    name="configsync.tasks.snapshot_to_bucket",
    ignore_result=True,
    max_retries=SNAPSHOT_MAX_RETRIES,
)
def snapshot_to_bucket(self: Task) -> bool:
    """Beat: this node's snapshot to the bucket, then retention; ``True`` when written.

    Skips (logged) when not due: not an R2 mode (read now), interval 0, no bucket. A failure
    (the bucket unreachable, refused) is retried with backoff, then logged until the next beat.
    """
    from configsync.snapshots.bucket import bucket_snapshot_due, bucket_snapshot_scheduled

    reason = bucket_snapshot_due()
    if reason is not None:
        logger.info("snapshot to the bucket skipped: %s", reason)
        return False
    try:
        backup = bucket_snapshot_scheduled()
    except Exception as exc:
        if self.request.retries >= SNAPSHOT_MAX_RETRIES:
            logger.error("snapshot to the bucket failed, until the next beat: %s", _reason(exc))
            return False
        countdown = _backoff(self.request.retries)
        logger.warning("snapshot to the bucket failed (retry in %ds): %s", countdown, _reason(exc))
        raise self.retry(countdown=countdown) from None
    if backup is None:
        return False
    logger.info("snapshot written to the bucket: %s (%d bytes)", backup.key, backup.size)
    return True


@task_prerun.connect
@task_postrun.connect
def _database_connections_fresh(sender: Any = None, **kwargs: Any) -> None:
    """Before and after every task, as Django does around a request: close the database
    connections that are broken or older than ``CONN_MAX_AGE`` and keep the others (a kept
    connection spares each task a new one). Not for a task run in the caller's process
    (``apply``, eager): its connection, maybe inside a transaction, is the caller's."""
    task = kwargs.get("task") or sender
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    close_old_connections()


def _consumes_default_queue(consumer: Any) -> bool:
    """Whether the worker of ``consumer`` (``worker_ready``'s sender) takes tasks from the default
    queue; a pusher (``-Q push``) does not, and leaves the start-up work to the worker that does."""
    try:
        queues = consumer.app.amqp.queues
        consumed = queues.consume_from or queues
        return str(consumer.app.conf.task_default_queue) in consumed
    except AttributeError:  # not a worker's consumer: behave as a worker does
        return True


@worker_ready.connect
def _sync_when_the_worker_starts(sender: Any = None, **kwargs: Any) -> None:
    """A worker that starts syncs at once (and seeds the peers) instead of after one interval
    (not a pusher: see :func:`_consumes_default_queue`)."""
    if not _consumes_default_queue(sender):
        return
    try:
        sync_all_peers.delay()
    except Exception as exc:
        logger.warning("could not enqueue the start-up sync: %s", type(exc).__name__)


@shared_task(name="configsync.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Beat, every heartbeat interval: the worker that runs this records its heartbeat (what
    ``GET /api/v1/health`` reports; see ``configsync.services.health``)."""
    from configsync.services.health import heartbeat_record

    heartbeat_record(role="worker")


_beat_thread: int | None = None
"""The thread running Celery beat in this process (none in web and worker processes)."""


@beat_init.connect
@beat_embedded_init.connect
def _beat_heartbeat_on_start(sender: Any = None, **kwargs: Any) -> None:
    """Beat starts (standalone, or embedded in a worker with ``--beat``): its first heartbeat."""
    global _beat_thread
    _beat_thread = threading.get_ident()
    from configsync.services.health import heartbeat_record

    heartbeat_record(role="beat")


@before_task_publish.connect
def _beat_heartbeat_on_send(sender: Any = None, **kwargs: Any) -> None:
    """Beat sends a task of its schedule (the heartbeat task at least every interval): its
    heartbeat. Other processes and threads publish too and record nothing."""
    if _beat_thread is not None and threading.get_ident() == _beat_thread:
        from configsync.services.health import heartbeat_record

        heartbeat_record(role="beat")


@worker_ready.connect
def _heartbeat_when_the_worker_starts(sender: Any = None, **kwargs: Any) -> None:
    """A worker that starts reports at once, through the broker, instead of after one interval
    (not a pusher: its heartbeat would be run, and recorded, by the other worker)."""
    if not _consumes_default_queue(sender):
        return
    try:
        heartbeat.delay()
    except Exception as exc:
        logger.warning("could not enqueue the start-up heartbeat: %s", type(exc).__name__)


def _is_transport_error(exc: BaseException) -> bool:
    try:
        from configsync.replication.errors import TransportError
    except ImportError:  # pragma: no cover - the engine always ships it
        return False
    return isinstance(exc, TransportError)


def _reason(exc: BaseException) -> str:
    """A one-line reason: the exception's class and message (our errors never carry values)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def sync_schedule_seconds() -> int:
    """How often the beat runs a cycle with every peer: the shortest interval of the strategy
    matrix (``CONFIGSYNC_SYNC_INTERVAL_SECONDS``, 30 s by default, for every row, or a shorter
    ``interval_seconds`` override); 0 when the periodic sync is off.

    One cycle carries every data type that changed (a peer keeps one cursor per direction, not
    one per type), so a type whose row says a longer interval is synced at least that often
    (in practice with the critical types' cycle), never less; a shorter one gets its own pace.
    """
    from configsync.replication import registry
    from configsync.replication.strategies import override_errors

    interval = app_settings.sync_interval_seconds
    if interval <= 0:
        return 0
    overrides = app_settings.SYNC_STRATEGIES
    if override_errors(overrides, registry.data_types()):
        return interval  # ignored whole, as the matrix ignores it (a system check error)
    shorter = [
        row["interval_seconds"]
        for row in (overrides.values() if isinstance(overrides, dict) else ())
        if isinstance(row, dict)
        and isinstance(row.get("interval_seconds"), int)
        and 0 < row["interval_seconds"] < interval
        and row.get("sync_enabled", True) is not False
    ]
    return min([interval, *shorter])


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The periodic tasks of this node; empty entries are left out when disabled."""
    schedule: dict[str, dict[str, Any]] = {}
    interval = app_settings.sync_interval_seconds
    sync_every = sync_schedule_seconds()
    if sync_every > 0:
        schedule["configsync-sync-all-peers"] = {
            "task": "configsync.tasks.sync_all_peers",
            "schedule": timedelta(seconds=sync_every),
            # A beat that could not be delivered in time is dropped, not piled up.
            "options": {"expires": max(sync_every, 5)},
        }
    prune_every = max(int(app_settings.SIGNATURE_MAX_AGE_SECONDS), 60)
    schedule["configsync-nonces-prune"] = {
        "task": "configsync.tasks.nonces_prune",
        "schedule": timedelta(seconds=prune_every),
        "options": {"expires": prune_every},
    }
    from configsync.services.health import heartbeat_interval_seconds

    every = heartbeat_interval_seconds()
    schedule["configsync-heartbeat"] = {
        "task": "configsync.tasks.heartbeat",
        "schedule": timedelta(seconds=every),
        # A heartbeat the worker gets late says nothing of now: dropped.
        "options": {"expires": max(every, 5)},
    }
    snapshot_every = int(app_settings.SNAPSHOT_INTERVAL_SECONDS or 0)
    if snapshot_every > 0 and app_settings.bucket_configured:
        # The mode is read when it runs (a switch to an R2 mode needs no restart).
        schedule["configsync-snapshot-to-bucket"] = {
            "task": "configsync.tasks.snapshot_to_bucket",
            "schedule": timedelta(seconds=snapshot_every),
            "options": {"expires": max(snapshot_every, 5)},
        }
    if interval > 0 and app_settings.ENV_FILE:
        schedule["configsync-env-sync"] = {
            "task": "configsync.tasks.env_sync",
            "schedule": timedelta(seconds=interval),
            "options": {"expires": max(interval, 5)},
        }
    return schedule
