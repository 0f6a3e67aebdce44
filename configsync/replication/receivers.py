"""Replication's receivers, connected by :func:`signals_connect` from ``ConfigsyncConfig.ready()``.

Model signals turn every local write of a replicated model into a change. Thin: they look the
sender up in the registry and call ``configsync.replication.services.apply``. Connected without a
sender (any model) and filtered by the registry, so a model registered later replicates without
more wiring. Imports of models, services and tasks are deferred to call time, so this module is
safe to import before the app registry is ready (and importing it connects nothing).

``pre_save``/``pre_delete`` lock the record's replication row first (inside a transaction), so a
local writer and a concurrent application of a remote change of the same record always take
their locks in the same order (model row, replication row, node clock) and never deadlock.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from django.db import models
from django.db.models.signals import (
    m2m_changed,
    post_delete,
    post_migrate,
    post_save,
    pre_delete,
    pre_save,
)

from configsync.conf import app_settings
from configsync.replication import registry
from configsync.replication.context import is_applying_remote
from configsync.signals import change_committed

logger = logging.getLogger(__name__)

PUSH_DEBOUNCE_SECONDS = 1
"""At most one push is enqueued per window (per process with a local cache, per node with Redis).

The push is delayed by the window itself, so every change whose enqueue was skipped committed
before the push reads the feed: the debounce can delay a change by one window, never drop it.
"""
_PUSH_PENDING_KEY = "configsync:push-pending"


def signals_connect() -> None:
    """Connect replication's receivers (idempotent: each has a ``dispatch_uid``)."""
    pre_save.connect(_lock, dispatch_uid="configsync_replication_pre_save")
    pre_delete.connect(_lock, dispatch_uid="configsync_replication_pre_delete")
    post_save.connect(_saved, dispatch_uid="configsync_replication_post_save")
    post_delete.connect(_deleted, dispatch_uid="configsync_replication_post_delete")
    m2m_changed.connect(_relation_changed, dispatch_uid="configsync_replication_m2m_changed")
    post_migrate.connect(_migrated, dispatch_uid="configsync_replication_backfill")
    change_committed.connect(push_on_write, dispatch_uid="configsync.push_on_write")


def _replicated(sender: Any) -> bool:
    return (
        isinstance(sender, type)
        and issubclass(sender, models.Model)
        and registry.for_model(sender) is not None
        and not is_applying_remote()
    )


def _lock(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if kwargs.get("raw") or not _replicated(sender):
        return
    from configsync.replication.services.local import replication_lock_record

    replication_lock_record(instance=instance)


def _saved(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if kwargs.get("raw") or not _replicated(sender):
        return
    from configsync.replication.services.local import replication_record_local_change

    replication_record_local_change(instance=instance, deleted=False)


def _deleted(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if not _replicated(sender):
        return
    from configsync.replication.services.local import replication_record_local_change

    replication_record_local_change(instance=instance, deleted=True)


def _relation_changed(
    sender: Any,
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    **kwargs: Any,
) -> None:
    """A replicated many-to-many relation changed (``user.groups.add``, ``group.user_set.remove``):
    record a new version of each record on the side that owns the replicated field."""
    if is_applying_remote() or action not in {"post_add", "post_remove", "post_clear"}:
        return
    from configsync.replication.services.local import replication_record_local_change

    owners: list[models.Model] = []
    if not reverse:
        rm = registry.for_model(type(instance))
        if rm is not None and _owns(rm, sender):
            owners = [instance]
    else:
        rm = registry.for_model(model)
        if rm is not None and _owns(rm, sender) and pk_set:
            owners = list(model._default_manager.filter(pk__in=pk_set))
    for owner in owners:
        replication_record_local_change(instance=owner, deleted=False)


def _owns(rm: registry.ReplicatedModel, through: Any) -> bool:
    return any(rm.m2m_field(name).remote_field.through is through for name in rm.many_to_many)


def _migrated(sender: Any, **kwargs: Any) -> None:
    if getattr(sender, "name", "") != "configsync":
        return
    from configsync.replication.services.local import replication_backfill

    replication_backfill()


def push_on_write(sender: Any, *, local: bool = False, **kwargs: Any) -> None:
    """``change_committed``: a local change committed, enqueue one push to the peers.

    Debounced (see ``PUSH_DEBOUNCE_SECONDS``). The signal is sent after the transaction commits,
    so enqueuing here is already ``on_commit``. A broker that refuses the message loses nothing:
    the change is in the feed and the next beat carries it; the failure is logged.
    """
    if not local or not app_settings.PUSH_ON_WRITE:
        return
    if not cache.add(_PUSH_PENDING_KEY, 1, timeout=PUSH_DEBOUNCE_SECONDS):
        return
    from configsync.models import Peer
    from configsync.tasks import push_to_peers

    try:
        if not app_settings.PEERS and not Peer.objects.filter(enabled=True).exists():
            return
        push_to_peers.apply_async(countdown=PUSH_DEBOUNCE_SECONDS + 0.2)
    except Exception as exc:
        logger.warning(
            "push on write not enqueued (the next beat carries it): %s", type(exc).__name__
        )
