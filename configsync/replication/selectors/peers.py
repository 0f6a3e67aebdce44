"""Reads of the peers: which ones a sync requested now covers."""

from __future__ import annotations

from configsync.exceptions import ConfigsyncError
from configsync.models import Peer


class UnknownPeerError(ConfigsyncError):
    """No peer has the given name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no peer named {name!r}")


def peers_to_sync(*, peer_name: str | None = None) -> list[Peer]:
    """Every enabled peer by name, or only ``peer_name`` (none when it is disabled).

    Raises ``UnknownPeerError`` when ``peer_name`` names no peer.
    """
    peers = Peer.objects.filter(enabled=True).order_by("name")
    if peer_name is not None:
        if not Peer.objects.filter(name=peer_name).exists():
            raise UnknownPeerError(peer_name)
        peers = peers.filter(name=peer_name)
    return list(peers)
