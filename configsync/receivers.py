"""The core's receivers, connected by :func:`signals_connect` from ``ConfigsyncConfig.ready()``.

* After ``migrate`` of configsync, this node's identity is created once (``node_identity_ensure``)
  so that reading it (``configsync.selectors.node.node_id``) never has to write.
* ``change_committed`` and ``changes_applied``: enqueue the data callback's notification of each
  change. The signals are sent after the transaction commits, so enqueuing here is already
  ``on_commit``. A broker that refuses the message loses nothing that the next change would not
  carry; the failure is logged (ids only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.core.signals import setting_changed
from django.db.models.signals import post_migrate

from configsync.conf import app_settings, app_settings_on_setting_changed
from configsync.signals import AppliedChange, change_committed, changes_applied

logger = logging.getLogger(__name__)


def signals_connect() -> None:
    """Connect the core's receivers (idempotent: each has a ``dispatch_uid``)."""
    post_migrate.connect(node_identity_on_migrate, dispatch_uid="configsync.node_identity")
    setting_changed.connect(app_settings_on_setting_changed, dispatch_uid="configsync.conf.reload")
    change_committed.connect(data_callback_on_change, dispatch_uid="configsync.data_callback")
    changes_applied.connect(
        data_callback_on_applied, dispatch_uid="configsync.data_callback_applied"
    )


def node_identity_on_migrate(sender: Any, **kwargs: Any) -> None:
    """configsync's tables exist: make sure this node has its identity (generated once)."""
    if getattr(sender, "name", "") != "configsync":
        return
    from configsync.services.node import node_identity_ensure

    node_identity_ensure(using=kwargs.get("using") or "default")


def data_callback_on_change(
    sender: Any,
    *,
    model_label: str,
    natural_key: str,
    seq: int | None = None,
    deleted: bool = False,
    **kwargs: Any,
) -> None:
    """Any committed change: enqueue its notification when a data callback URL is set."""
    if not app_settings.DATA_CALLBACK_URL:
        return
    from configsync.tasks import notify_data_callback

    try:
        notify_data_callback.delay(model_label, str(natural_key), seq, bool(deleted))
    except Exception as exc:
        logger.warning(
            "data callback for %s %s not enqueued: %s", model_label, natural_key, type(exc).__name__
        )


def data_callback_on_applied(
    sender: Any,
    *,
    changes: Sequence[AppliedChange] = (),
    **kwargs: Any,
) -> None:
    """A batch of received changes committed: each one's notification, as for a local change."""
    if not app_settings.DATA_CALLBACK_URL:
        return
    for change in changes:
        data_callback_on_change(
            sender,
            model_label=change.model_label,
            natural_key=change.natural_key,
            seq=change.seq,
            deleted=change.deleted,
        )
