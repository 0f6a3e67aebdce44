"""Replication's receivers, connected by :func:`signals_connect` from ``ConfigsyncConfig.ready()``.

Model signals turn every local write of a replicated model into a change. Thin: they call
``configsync.replication.services.local``. The model signals are connected **per model**
(``model_connect``, for every model registered before or after ``signals_connect``, through
``registry.on_register``, so a model registered later replicates without more wiring): a
receiver connected without a sender would listen to every model, and Django cannot fast-delete
(one ``DELETE``, no rows fetched) any model with a delete receiver, e.g. ``SyncNonce`` rows
pruned by the beat. Imports of models, services and tasks are deferred to call time, so this
module is safe to import before the app registry is ready (and importing it connects nothing).

``pre_save``/``pre_delete`` lock the record's replication row first (inside a transaction), so a
local writer and a concurrent application of a remote change of the same record always take
their locks in the same order (model row, replication row, node clock) and never deadlock.

**Push on commit** (:func:`push_on_write`): a committed local change raises each enabled peer's
push flag and, when the flag was not raised yet, enqueues that peer's push at once
(``configsync.tasks.push_on_commit``); the pusher holding the peer's lock pushes until the flag
is clear (``configsync.replication.services.sync``).
"""

from __future__ import annotations

import logging
from typing import Any

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


def signals_connect() -> None:
    """Connect replication's receivers (idempotent: each has a ``dispatch_uid``); the model
    signals of every model registered so far (later ones: ``model_connect``)."""
    m2m_changed.connect(_relation_changed, dispatch_uid="configsync_replication_m2m_changed")
    post_migrate.connect(_migrated, dispatch_uid="configsync_replication_backfill")
    change_committed.connect(push_on_write, dispatch_uid="configsync.push_on_write")
    registry.on_register(model_connect)
    for rm in registry.all_registered():
        model_connect(rm.label)


def model_connect(label: str) -> None:
    """Connect the save and delete receivers to the model ``label`` (``app_label.modelname``;
    resolved lazily, so the model need not be loaded yet). Idempotent."""
    pre_save.connect(_lock, sender=label, dispatch_uid=f"configsync_replication_pre_save:{label}")
    pre_delete.connect(
        _lock, sender=label, dispatch_uid=f"configsync_replication_pre_delete:{label}"
    )
    post_save.connect(
        _saved, sender=label, dispatch_uid=f"configsync_replication_post_save:{label}"
    )
    post_delete.connect(
        _deleted, sender=label, dispatch_uid=f"configsync_replication_post_delete:{label}"
    )


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
    """``change_committed``: a local change committed, push it to the peers now.

    The signal is sent after the transaction commits, so this is already ``on_commit``; the
    enqueue (``tasks.push_on_commit``) logs a broker that refuses the message and loses
    nothing: the change is in the feed and the next beat carries it.
    """
    if not local or not app_settings.PUSH_ON_WRITE:
        return
    from configsync.tasks import push_on_commit

    push_on_commit()
