"""What the NATS transport does beyond the contract suite, against the real nats-server with
JetStream on 127.0.0.1:4222 (skipped, saying so, without one): the server drops a re-published
change, the durable consumer keeps a node's position across instances and is acknowledged only
once the cursor is committed, the stream holds ciphertext only (read raw), a message without the
group's MAC is dropped as a fault, and a real sync cycle runs through it. The strategy-matrix
tests at the end need no server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from configsync.models import Peer, SyncRun, SystemConfig
from configsync.replication import strategies
from configsync.replication.errors import TransportError
from configsync.replication.selectors.feed import feed_page
from configsync.replication.selectors.status import peer_statuses
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.replication.transports.nats import (
    MAC_HEADER,
    MSG_ID_HEADER,
    NatsTransport,
    durable_name,
    stream_name,
)
from configsync.services.system_config import system_config_set
from tests.support.kit_nats import NATS_URL, NatsKit, nats_kit
from tests.support.replication import LOCAL, OTHER, SECRET, remote_change, use_replication_settings

__all__ = ["nats_kit"]  # the fixture, imported for this module

A, B, C = "node-a", "node-b", "node-c"


def batch(writer: str, *names: str, value: str = "v") -> list[dict[str, Any]]:
    return [remote_change(name, value, node=writer) for name in names]


def stored(kit: NatsKit) -> list[Any]:
    """Every message of the group's stream as the server keeps it (subject, headers, data)."""

    async def read(js: Any) -> list[Any]:
        info = await js.stream_info(stream_name(kit.group))
        first, last = int(info.state.first_seq or 0), int(info.state.last_seq or 0)
        return [await js.get_msg(stream_name(kit.group), seq) for seq in range(first, last + 1)]

    return kit.raw(read)  # type: ignore[no-any-return]


def consumer(kit: NatsKit, node: str) -> Any:
    async def read(js: Any) -> Any:
        return await js.consumer_info(stream_name(kit.group), durable_name(node))

    return kit.raw(read)


def keys(changes: list[dict[str, Any]]) -> list[str]:
    return [c["key"] for c in changes]


def test_a_republished_change_is_stored_once(nats_kit: NatsKit) -> None:
    changes = batch(A, "A1", "A2")
    writer = nats_kit.transport(node=A)
    writer.push(changes)
    writer.push(changes)  # a retried batch: the server drops it by Nats-Msg-Id
    nats_kit.transport(node=A).push(changes[:1])  # and so from another instance
    messages = stored(nats_kit)
    assert len(messages) == 2
    assert {m.headers[MSG_ID_HEADER] for m in messages} == {
        m.headers[MSG_ID_HEADER] for m in messages[:2]
    }
    assert keys(nats_kit.transport(node=C).pull("", 10).changes) == ["A1", "A2"]


def test_the_durable_cursor_survives_a_new_instance_and_is_acked_only_once_committed(
    nats_kit: NatsKit,
) -> None:
    nats_kit.transport(node=A).push(batch(A, "A1", "A2", "A3"))
    first = nats_kit.transport(node=C)
    page = first.pull("", 2)
    assert keys(page.changes) == ["A1", "A2"] and page.has_more
    # Fetched, not committed: nothing is acknowledged yet.
    info = consumer(nats_kit, C)
    assert info.ack_floor.stream_seq == 0 and info.num_ack_pending == 2
    first.close()  # the process ends; the cycle had committed page.next_cursor

    second = nats_kit.transport(node=C)
    rest = second.pull(page.next_cursor, 10)
    assert keys(rest.changes) == ["A3"] and not rest.has_more
    # Asking for the next page proves the previous one committed: it is acknowledged now.
    second.log_record(direction="pull", session="ab" * 16, cursor=rest.next_cursor)
    info = consumer(nats_kit, C)
    assert info.ack_floor.stream_seq == 3 and info.num_pending == 0
    idle = second.pull(rest.next_cursor, 10)
    assert idle.changes == [] and idle.next_cursor == rest.next_cursor and not idle.has_more


def test_an_uncommitted_page_is_read_again_from_the_committed_cursor(nats_kit: NatsKit) -> None:
    nats_kit.transport(node=A).push(batch(A, "A1", "A2"))
    failed = nats_kit.transport(node=C)
    assert keys(failed.pull("", 10).changes) == ["A1", "A2"]
    failed.close()  # the apply failed: the checkpoint still says ""
    retry = nats_kit.transport(node=C)
    assert keys(retry.pull("", 10).changes) == ["A1", "A2"]
    page = retry.pull("1", 10)  # a cursor inside what was delivered
    assert keys(page.changes) == ["A2"] and page.next_cursor == "2"


def test_a_recreated_stream_starts_the_reader_over(nats_kit: NatsKit) -> None:
    nats_kit.transport(node=A).push(batch(A, "A1", "A2"))
    reader = nats_kit.transport(node=C)
    cursor = reader.pull("", 10).next_cursor
    reader.close()
    nats_kit.close()  # the stream and the bucket are gone
    nats_kit.opened.clear()
    nats_kit.transport(node=A).push(batch(A, "NEW"))
    page = nats_kit.transport(node=C).pull(cursor, 10)
    assert page.reset and keys(page.changes) == ["NEW"]


def test_the_stream_holds_ciphertext_only(nats_kit: NatsKit, settings: Any, db: None) -> None:
    canary = "sk-CANARY-nats-5d81c0e2"
    system_config_set(key="OPENAI_API_KEY", value=canary, is_sensitive=True)
    changes = feed_page(node=LOCAL, cursor="", limit=10).changes
    token = changes[0]["data"]["secret_value"]
    assert token.startswith("enc1:")
    nats_kit.transport(node=LOCAL).push(changes)

    messages = stored(nats_kit)
    raw = b"".join(bytes(m.data) + json.dumps(m.headers).encode() for m in messages)
    assert canary.encode() not in raw and token.encode() in raw
    assert all(m.subject == f"configsync.{nats_kit.group}.{LOCAL}" for m in messages)
    assert all(len(m.headers[MAC_HEADER]) == 64 for m in messages)
    got = nats_kit.transport(node=C).pull("", 10).changes
    assert [c["data"]["secret_value"] for c in got] == [token]


def test_a_message_without_the_groups_mac_is_dropped_as_a_fault(nats_kit: NatsKit) -> None:
    nats_kit.transport(node=A).push(batch(A, "A1"))
    forged = json.dumps(remote_change("FORGED", "evil", node=B)).encode()

    async def publish(js: Any) -> None:
        subject = f"configsync.{nats_kit.group}.{B}"
        await js.publish(subject, forged, headers={MAC_HEADER: "0" * 64})
        await js.publish(subject, b"not json")

    nats_kit.raw(publish)
    nats_kit.transport(node=A).push(batch(A, "A2"))
    reader = nats_kit.transport(node=C)
    page = reader.pull("", 10)
    assert keys(page.changes) == ["A1", "A2"] and page.next_cursor == "4"
    assert reader.faults == [
        f"writer {B}: message 2 fails authentication (dropped)",
        f"writer {B}: message 3 fails authentication (dropped)",
    ]


def test_an_idle_pull_asks_for_no_messages(nats_kit: NatsKit) -> None:
    nats_kit.transport(node=A).push(batch(A, "A1"))
    reader = nats_kit.transport(node=C)
    cursor = reader.pull("", 10).next_cursor
    fetched: list[str] = []
    original = reader._fetch

    async def spy(name: str, limit: int) -> list[Any]:
        fetched.append(name)
        return await original(name, limit)

    reader._fetch = spy  # type: ignore[method-assign]
    for _ in range(3):
        assert reader.pull(cursor, 10).changes == []
    assert fetched == []
    nats_kit.transport(node=A).push(batch(A, "A2"))
    assert keys(reader.pull(cursor, 10).changes) == ["A2"] and fetched == [durable_name(C)]


def test_the_digest_moves_no_durable_consumer(nats_kit: NatsKit) -> None:
    nats_kit.transport(node=A).push(batch(A, "A1", "A2"))
    reader = nats_kit.transport(node=C)
    page = reader.digest("", 10)
    assert keys(page.changes) == ["A1", "A2"] and "data" not in page.changes[0]
    with pytest.raises(Exception, match="not found"):
        consumer(nats_kit, C)


def test_a_group_id_that_cannot_name_a_stream_is_refused() -> None:
    with pytest.raises(TransportError, match="CONFIGSYNC_GROUP_ID"):
        NatsTransport(name="nats", node=A, url=NATS_URL, group="a.b", secret=SECRET)
    with pytest.raises(TransportError, match="node's id"):
        NatsTransport(name="nats", node="a..b", url=NATS_URL, group="g", secret=SECRET)


def test_an_unreachable_server_names_the_host_never_the_credentials() -> None:
    link = NatsTransport(
        name="nats",
        node=A,
        url="nats://cs:sk-CANARY-nats-pass@127.0.0.1:1",
        group="g",
        secret=SECRET,
        timeout=2,
    )
    with pytest.raises(TransportError) as caught:
        link.log_get()
    assert "unreachable" in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    assert "CANARY" not in str(caught.value)
    link.close()


# -- a real sync cycle -----------------------------------------------------------------------


@pytest.fixture
def nats_peer(nats_kit: NatsKit, settings: Any, db: None) -> Peer:
    use_replication_settings(settings)
    settings.CONFIGSYNC_NATS_URL = NATS_URL
    settings.CONFIGSYNC_GROUP_ID = nats_kit.group
    return Peer.objects.create(name="nats", transport=Peer.TransportKind.NATS)


def test_a_sync_cycle_applies_another_writers_change_and_publishes_ours(
    nats_kit: NatsKit, nats_peer: Peer
) -> None:
    other = nats_kit.transport(node=OTHER)
    other.push([remote_change("FROM_OTHER", "hello", node=OTHER)])
    system_config_set(key="FROM_LOCAL", value="hi")

    result = sync_cycle(peer_id=nats_peer.pk)

    assert result.ok and result.pulled == 1 and result.pushed == 1
    assert SystemConfig.objects.get(key="FROM_OTHER").value == "hello"
    nats_peer.refresh_from_db()
    assert nats_peer.node_id == f"nats.{nats_kit.group}"
    assert keys(other.pull("", 10).changes) == ["FROM_LOCAL"]  # FROM_OTHER not echoed back
    assert {e.direction for e in other.log_get().entries} == set()
    assert {e.direction for e in nats_kit.transport(node=LOCAL).log_get().entries} == {
        "pull",
        "push",
    }
    # The cycle recorded the pull: the message it applied is acknowledged.
    assert consumer(nats_kit, LOCAL).num_ack_pending == 0

    again = sync_cycle(peer_id=nats_peer.pk)
    assert again.ok and again.pulled == 0 and again.pushed == 0


def test_a_forged_message_fails_the_run_after_applying_the_rest(
    nats_kit: NatsKit, nats_peer: Peer
) -> None:
    async def publish(js: Any) -> None:
        body = json.dumps(remote_change("FORGED", node=B)).encode()
        await js.publish(f"configsync.{nats_kit.group}.{B}", body)

    nats_kit.raw(publish)
    nats_kit.transport(node=A).push(batch(A, "A1"))

    with pytest.raises(SyncCycleError, match="fails authentication"):
        sync_cycle(peer_id=nats_peer.pk)

    assert SystemConfig.objects.filter(key="A1").exists()
    assert not SystemConfig.objects.filter(key="FORGED").exists()
    assert not SyncRun.objects.get().ok


@pytest.mark.django_db
def test_an_unreachable_server_fails_the_run_visibly(settings: Any) -> None:
    use_replication_settings(settings)
    settings.CONFIGSYNC_NATS_URL = "nats://127.0.0.1:1"
    peer = Peer.objects.create(name="nats", transport=Peer.TransportKind.NATS)
    with pytest.raises(SyncCycleError, match="unreachable"):
        sync_cycle(peer_id=peer.pk)
    run = SyncRun.objects.get()
    assert not run.ok and "127.0.0.1:1" in run.error
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    (shown,) = peer_statuses([peer])
    assert shown.transport == "nats" and shown.in_mode
    assert shown.last_run_ok is False and "unreachable" in shown.last_error


# -- the strategy matrix (no server) ---------------------------------------------------------


def test_nats_joins_every_mode_but_local_only_when_configured() -> None:
    for mode, kinds in strategies.MODE_TRANSPORTS.items():
        assert strategies.transports_of(mode, nats=False) == kinds
        joined = strategies.transports_of(mode, nats=True)
        assert joined == (kinds if mode == "LOCAL_ONLY" else (*kinds, "nats"))
    assert strategies.transports_of("NOT_A_MODE", nats=True) == ()


def test_nats_alone_is_an_external_side() -> None:
    args: dict[str, Any] = {"bucket": {}, "external_database": False, "http_peers": False}
    assert strategies.transport_problems("LOCAL_EXTERNAL", **args)[1]
    assert strategies.transport_problems("LOCAL_EXTERNAL", nats=True, **args) == ([], [])


@pytest.mark.django_db
def test_the_setting_seeds_the_nats_peer_and_the_mode_lists_it(settings: Any) -> None:
    from configsync.replication.selectors.strategies import sync_strategies
    from configsync.replication.services.peers import peer_seed_from_settings

    use_replication_settings(settings)
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    settings.CONFIGSYNC_NATS_URL = NATS_URL
    peer_seed_from_settings()
    peer = Peer.objects.get(name="nats")
    assert peer.transport == Peer.TransportKind.NATS and peer.enabled
    shown = sync_strategies()
    assert shown["transports"] == ["http", "database", "nats"]
    assert {"name": "nats", "transport": "nats", "enabled": True} in shown["peers"]

    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_ONLY"
    assert sync_strategies()["transports"] == []
