"""Signals of configsync. This module only defines them: every receiver is connected in
``ConfigsyncConfig.ready()`` (one ``signals_connect()`` per subsystem, see ``configsync.apps``).

``change_committed`` is sent after the transaction commits, once per local change of a
replicated record (a write on this node). Keyword arguments (ids, never values): ``model_label``
(``app_label.modelname``), ``natural_key``, ``seq`` (this node's feed sequence), ``deleted``
(tombstone) and ``local`` (``True``). Push-on-write, the data callback and the .env bridge listen
to it.

``changes_applied`` is sent after the transaction commits, once per batch of changes received
from a peer and applied here (a page of a pull, a push, a quarantine retry), with ``changes``: a
list of :class:`AppliedChange` in feed order. Applied rows may be written set-wise, without
``save()`` and so without ``post_save``/``post_delete``: whatever must see every change of a
record (the lookup caches, the data callback, the .env bridge) listens to this signal too.
"""

from typing import NamedTuple

from django.dispatch import Signal

change_committed = Signal()
changes_applied = Signal()


class AppliedChange(NamedTuple):
    """One change of ``changes_applied``: ids only, never a value."""

    model_label: str
    natural_key: str
    seq: int
    deleted: bool
