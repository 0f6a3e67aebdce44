"""A local site joins a cloud group through a leaf node.

The hub is a nats-server with JetStream in the domain ``cloud`` and a port for leaf nodes; the
leaf is a nats-server *without* JetStream, connected to the hub by one outbound leaf-node
connection, with the two subject mappings the README shows: ``$JS.API.>`` to
``$JS.cloud.API.>`` (the stream's API, answered by the hub's domain) and ``$KV.>`` to
``$JS.cloud.API.$KV.>`` (the key-value bucket). A node attached to the leaf and a node attached
to the hub share one stream and converge; without the mappings the leaf's node cannot reach
JetStream at all (the hub denies ``$JS.API.>`` across a leaf-node connection), and says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from configsync.replication.errors import TransportError
from configsync.replication.transports.nats import NatsTransport
from tests.support.inprocess import InProcessNatsGroup, NodeDatabases
from tests.support.nats_node import nats_databases
from tests.support.nats_server import NatsServer, wait_until
from tests.support.replication import SECRET

__all__ = ["nats_databases"]  # the fixture, for this module

pytestmark = pytest.mark.multinode

LEAF_MAPPINGS = {"$JS.API.>": "$JS.cloud.API.>", "$KV.>": "$JS.cloud.API.$KV.>"}


@pytest.fixture(scope="module")
def hub() -> Iterator[NatsServer]:
    with NatsServer(name="hub", domain="cloud", leaf_listen=True) as server:
        yield server


def _leaf(hub: NatsServer, mappings: dict[str, str]) -> NatsServer:
    leaf = NatsServer(
        name="site", jetstream=False, leaf_remotes=[hub.leaf_url], mappings=mappings
    ).start()
    wait_until(leaf.leaf_connected, timeout=20, what="the leaf node connected to the hub")
    return leaf


def test_a_node_behind_a_leaf_converges_with_a_node_on_the_hub(
    hub: NatsServer, nats_databases: NodeDatabases, django_db_blocker: Any
) -> None:
    leaf = _leaf(hub, LEAF_MAPPINGS)
    group = f"l{uuid.uuid4().hex[:10]}"
    with django_db_blocker.unblock():
        cloud = InProcessNatsGroup(databases=nats_databases, url=hub.url, group=group)
        site = InProcessNatsGroup(databases=nats_databases, url=leaf.url, group=group)
        try:
            cloud.join("cloud-a")
            site.join("site-b")
            cloud.write("cloud-a", "FROM_CLOUD", "c")
            site.write("site-b", "FROM_SITE", "s")
            site.write("site-b", "SHARED", "site", push=False)
            cloud.write("cloud-a", "SHARED", "cloud", push=False)
            site.push("site-b")
            cloud.push("cloud-a")
            for _ in range(3):  # each reads the other's, then the merges settle
                site.settle()
                cloud.settle()
            assert site.values("site-b") == cloud.values("cloud-a")
            assert {"FROM_CLOUD", "FROM_SITE", "SHARED"} <= set(site.values("site-b"))
            assert site.digest("site-b") == cloud.digest("cloud-a")
            assert site.cycle_errors == [] and cloud.cycle_errors == []
        finally:
            site.close()
            cloud.close()
            leaf.close()


def test_without_the_mappings_the_leafs_node_cannot_reach_jetstream(hub: NatsServer) -> None:
    leaf = _leaf(hub, {})
    link = NatsTransport(
        name="nats",
        node="site-b",
        url=leaf.url,
        group=f"l{uuid.uuid4().hex[:10]}",
        secret=SECRET,
        options={},
        timeout=2,
    )
    try:
        with pytest.raises(
            TransportError, match=r"JetStream is not enabled|no responders|timed out"
        ):
            link.log_get()
    finally:
        link.close()
        leaf.close()
