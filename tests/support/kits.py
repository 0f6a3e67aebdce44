"""What the transport contract suite (``tests/replication/transports/test_contract.py``) needs
from each transport: a :class:`TransportKit` gives links to one shared remote as several writers.

The remote is what the writers share: for HTTP the live test server (a configsync node; links
sign as the given node id), for the database transport a fresh external PostgreSQL database, for
the bucket transport a fresh bucket on a real S3-compatible server. ``link(node=A)`` and
``link(node=B)`` reach the same remote as two different nodes.
"""

from __future__ import annotations

from typing import Protocol

from configsync.replication.transports.base import Transport


class TransportKit(Protocol):
    kind: str
    """``http``, ``database``, ``bucket`` or ``nats`` (``Peer.transport``)."""

    def link(self, *, node: str) -> Transport:
        """A transport to the shared remote, acting as node ``node``."""

    def down(self, *, node: str) -> Transport:
        """A transport to the same kind of remote that cannot be reached (nothing listens)."""

    def refused(self, *, node: str) -> Transport:
        """A transport to the shared remote with wrong credentials (secret, password, key)."""
