"""Reaching a peer: the transport a cycle or a diff uses, by the peer's ``transport`` kind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from configsync.models import Peer
from configsync.replication.transports.base import Transport
from configsync.services.node import node_id


def transport_for(peer: Peer) -> Transport:
    """The transport that reaches ``peer``: HTTP (signed with ``CONFIGSYNC_SYNC_SECRET``), the
    external database (``EXTERNAL_DATABASE_URL``), the bucket (``CONFIGSYNC_R2_*``) or the NATS
    stream (``CONFIGSYNC_NATS_URL``)."""
    if peer.transport == Peer.TransportKind.DATABASE:
        from configsync.replication.transports.database import DatabaseTransport

        return DatabaseTransport(name=peer.name, node=node_id())
    if peer.transport == Peer.TransportKind.BUCKET:
        from configsync.replication.transports.bucket import BucketTransport

        return BucketTransport(name=peer.name, node=node_id())
    if peer.transport == Peer.TransportKind.NATS:
        from configsync.replication.transports.nats import NatsTransport

        return NatsTransport(name=peer.name, node=node_id())
    from configsync.replication.transports.http import HttpPeerTransport

    return HttpPeerTransport(name=peer.name, base_url=peer.base_url, node=node_id())


@contextmanager
def peer_link(peer: Peer, transport: Transport | None) -> Iterator[Transport]:
    """``transport`` as given, or one opened for ``peer`` and closed afterwards."""
    if transport is not None:
        yield transport
        return
    link = transport_for(peer)
    try:
        yield link
    finally:
        link.close()
