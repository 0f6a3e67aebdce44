"""Prompt export: a committed ``SystemConfig`` change (local or replicated) enqueues ``env_sync``.

Local changes arrive one by one (``change_committed``), replicated ones a batch at a time
(``changes_applied``); either way one enqueue at most per debounce window.

The beat task catches everything anyway; this only shortens the delay. Changes the bridge itself
makes are ignored (its run already wrote the file), and enqueues are debounced to one per
``ENV_SYNC_DEBOUNCE_SECONDS`` window — the task runs after the window, so a change whose enqueue
was skipped is still included. A broker refusing the message loses nothing (the beat carries it).
Connected by :func:`signals_connect` from ``ConfigsyncConfig.ready()``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.core.cache import cache

from configsync.conf import app_settings
from configsync.signals import AppliedChange, change_committed, changes_applied

logger = logging.getLogger(__name__)

ENV_SYNC_DEBOUNCE_SECONDS = 1
_PENDING_KEY = "configsync:env-sync-pending"


def signals_connect() -> None:
    """Connect the .env bridge's receivers (idempotent: each has a ``dispatch_uid``)."""
    change_committed.connect(env_sync_on_change, dispatch_uid="configsync.env_sync_on_change")
    changes_applied.connect(env_sync_on_applied, dispatch_uid="configsync.env_sync_on_applied")


def env_sync_on_applied(
    sender: Any, *, changes: Sequence[AppliedChange] = (), **kwargs: Any
) -> None:
    """``changes_applied`` receiver: a batch holding a system setting counts as one change."""
    label = "configsync.systemconfig"
    if any(change.model_label == label for change in changes):
        env_sync_on_change(sender, model_label=label)


def env_sync_on_change(sender: Any, *, model_label: str = "", **kwargs: Any) -> None:
    """``change_committed`` receiver: enqueue one ``env_sync`` when a system setting changed."""
    if model_label != "configsync.systemconfig" or not app_settings.ENV_FILE:
        return
    from configsync.envbridge.service import env_bridge_running

    if env_bridge_running():
        return
    if not cache.add(_PENDING_KEY, 1, timeout=ENV_SYNC_DEBOUNCE_SECONDS):
        return
    from configsync.tasks import env_sync

    try:
        env_sync.apply_async(countdown=ENV_SYNC_DEBOUNCE_SECONDS + 0.2)
    except Exception as exc:
        logger.warning("env sync not enqueued (the next beat carries it): %s", type(exc).__name__)
