"""Model-signal receivers that turn every local write of a replicated model into a change.

Thin: they look the sender up in the registry and call ``configsync.replication.services.apply``.
Connected without a sender (any model) and filtered by the registry, so a model registered later
replicates without more wiring. Imports of models and services are deferred to call time, so this
module is safe to import before the app registry is ready.

``pre_save``/``pre_delete`` lock the record's replication row first (inside a transaction), so a
local writer and a concurrent application of a remote change of the same record always take
their locks in the same order (model row, replication row, node clock) and never deadlock.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import (
    post_delete,
    post_migrate,
    post_save,
    pre_delete,
    pre_save,
)

from configsync.replication import registry
from configsync.replication.context import is_applying_remote


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


pre_save.connect(_lock, dispatch_uid="configsync_replication_pre_save")
pre_delete.connect(_lock, dispatch_uid="configsync_replication_pre_delete")
post_save.connect(_saved, dispatch_uid="configsync_replication_post_save")
post_delete.connect(_deleted, dispatch_uid="configsync_replication_post_delete")


def _migrated(sender: Any, **kwargs: Any) -> None:
    if getattr(sender, "name", "") != "configsync":
        return
    from configsync.replication.services.local import replication_backfill

    replication_backfill()


post_migrate.connect(_migrated, dispatch_uid="configsync_replication_backfill")
