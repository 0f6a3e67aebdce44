"""Receivers of ``change_committed`` (connected in ``configsync.signals``): they only enqueue.

``change_committed`` is sent after the transaction commits, so enqueuing here is already
``on_commit``. A broker that refuses the message loses nothing: the change is in the feed and the
next beat carries it; the failure is logged (ids only).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache

from configsync.conf import app_settings

logger = logging.getLogger(__name__)

PUSH_DEBOUNCE_SECONDS = 1
"""At most one push is enqueued per window (per process with a local cache, per node with Redis).

The push is delayed by the window itself, so every change whose enqueue was skipped committed
before the push reads the feed: the debounce can delay a change by one window, never drop it.
"""
_PUSH_PENDING_KEY = "configsync:push-pending"


def push_on_write(sender: Any, *, local: bool = False, **kwargs: Any) -> None:
    """A local change committed: enqueue one push to the peers (debounced, see above)."""
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
