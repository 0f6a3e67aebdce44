"""Signals of configsync and the receivers wired in ``ConfigsyncConfig.ready``. Receivers are thin.

``change_committed`` is sent after the transaction commits, once per change of a replicated
record: a local write or an applied remote change. Keyword arguments (ids, never values):
``model_label`` (``app_label.modelname``), ``natural_key``, ``seq`` (this node's feed sequence),
``deleted`` (tombstone) and ``local`` (``True`` when written on this node, ``False`` when
received from a peer). Caches, push-on-write, the data callback and the .env bridge listen to it.
"""

from django.dispatch import Signal

change_committed = Signal()

# Push on write and the data callback (configsync.receivers; they only enqueue tasks).
from configsync.receivers import data_callback_on_change, push_on_write  # noqa: E402

change_committed.connect(push_on_write, dispatch_uid="configsync.push_on_write")
change_committed.connect(data_callback_on_change, dispatch_uid="configsync.data_callback")

# In-process lookup caches (configsync.lookup) are invalidated on every committed change.
from configsync.lookup import connect_invalidation  # noqa: E402

connect_invalidation()

# The .env bridge exports changes promptly (configsync.envbridge.receivers; it only enqueues).
from configsync.envbridge.receivers import env_sync_on_change  # noqa: E402

change_committed.connect(env_sync_on_change, dispatch_uid="configsync.env_sync_on_change")

# Replication: every local write of a registered model becomes a change (configsync.replication).
import configsync.replication.wiring  # noqa: E402, F401
