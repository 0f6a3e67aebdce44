"""Operations on replication scheduling: triggering a sync now."""

from __future__ import annotations

from functools import partial

from django.db import transaction

from configsync.exceptions import ConfigsyncError
from configsync.models import Peer


class UnknownPeerError(ConfigsyncError):
    """No peer has the given name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no peer named {name!r}")


def sync_trigger(*, peer_name: str | None = None) -> list[Peer]:
    """Enqueue a full-duplex cycle now with ``peer_name``, or with every enabled peer.

    Returns the peers whose cycle is enqueued (after the current transaction commits).
    Raises ``UnknownPeerError`` when ``peer_name`` names no peer; a disabled peer named
    explicitly is not enqueued (empty list).
    """
    from configsync.tasks import sync_peer

    peers = Peer.objects.filter(enabled=True).order_by("name")
    if peer_name is not None:
        if not Peer.objects.filter(name=peer_name).exists():
            raise UnknownPeerError(peer_name)
        peers = peers.filter(name=peer_name)
    selected = list(peers)
    for peer in selected:
        transaction.on_commit(partial(sync_peer.delay, peer.pk))
    return selected
