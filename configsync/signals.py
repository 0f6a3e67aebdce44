"""Signals of configsync. This module only defines them: every receiver is connected in
``ConfigsyncConfig.ready()`` (one ``signals_connect()`` per subsystem, see ``configsync.apps``).

``change_committed`` is sent after the transaction commits, once per change of a replicated
record: a local write or an applied remote change. Keyword arguments (ids, never values):
``model_label`` (``app_label.modelname``), ``natural_key``, ``seq`` (this node's feed sequence),
``deleted`` (tombstone) and ``local`` (``True`` when written on this node, ``False`` when
received from a peer). Push-on-write, the data callback and the .env bridge listen to it.
"""

from django.dispatch import Signal

change_committed = Signal()
