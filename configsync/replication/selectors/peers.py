"""Reads of the peers: which ones the beat, a sync requested now, or the CLI covers."""

from __future__ import annotations

from django.db.models import QuerySet

from configsync.exceptions import ConfigsyncError
from configsync.models import Peer
from configsync.replication.selectors.mode import mode_transports


class UnknownPeerError(ConfigsyncError):
    """No peer has the given name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no peer named {name!r}")


def peers_enabled() -> QuerySet[Peer]:
    """The enabled peers whose transport this node's deployment mode uses (read now), by name:
    none in ``LOCAL_ONLY``, HTTP peers and the external database in ``LOCAL_EXTERNAL``, the
    bucket in ``LOCAL_R2``, all of them in ``LOCAL_EXTERNAL_R2``."""
    return Peer.objects.filter(enabled=True, transport__in=mode_transports()).order_by("name")


def peers_all() -> QuerySet[Peer]:
    """Every peer, enabled or not, whatever its transport, by name."""
    return Peer.objects.order_by("name")


def peers_to_sync(*, peer_name: str | None = None) -> list[Peer]:
    """Every enabled peer by name, or only ``peer_name`` (none when it is disabled).

    Raises ``UnknownPeerError`` when ``peer_name`` names no peer.
    """
    peers = peers_enabled()
    if peer_name is not None:
        if not Peer.objects.filter(name=peer_name).exists():
            raise UnknownPeerError(peer_name)
        peers = peers.filter(name=peer_name)
    return list(peers)
