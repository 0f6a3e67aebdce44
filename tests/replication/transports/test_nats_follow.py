"""The NATS follower (``configsync.replication.natsfollow``) and what the transport does for it,
against the real nats-server with JetStream on 127.0.0.1:4222 (skipped, saying so, without one):
the follower applies what other nodes publish through the node's durable consumer and the same
apply path, acknowledges only after the commit, never applies a redelivered or re-published
change twice (also when another process's cycles share the consumer), reports its consumer's lag
(``status``, the API, ``/metrics``), catches up from a snapshot in the object store once
retention has dropped what it missed, idles when NATS is not configured, and survives a restart
of the server (a server of its own, started and stopped here).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from configsync.models import Peer, SyncRun, SystemConfig
from configsync.replication.models.history import RecordVersion
from configsync.replication.natsfollow.loop import NatsFollower
from configsync.replication.natsfollow.service import (
    nats_follow_once,
    nats_snapshot_write,
    nats_status,
)
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.replication.transports.nats import (
    _LOOP,
    _POOL,
    MAC_HEADER,
    MSG_ID_HEADER,
    NatsTransport,
    durable_name,
    message_mac,
    snapshot_bucket,
    stream_name,
)
from multinode.cluster import free_port
from tests.support.kit_nats import NatsKit, nats_kit
from tests.support.replication import LOCAL, OTHER, SECRET, remote_change, use_replication_settings

__all__ = ["nats_kit"]  # the fixture, imported for this module

A = "node-a"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


@pytest.fixture(autouse=True)
def _snapshots_deleted(request: pytest.FixtureRequest) -> Iterator[None]:
    """The group's snapshot store goes with the kit's stream and bucket (the kit deletes those)."""
    if "nats_kit" not in request.fixturenames:
        yield
        return
    kit = request.getfixturevalue("nats_kit")
    yield

    async def delete(js: Any) -> None:
        from nats.js.errors import NotFoundError

        with contextlib.suppress(NotFoundError):
            await js.delete_stream(f"OBJ_{snapshot_bucket(kit.group)}")

    kit.raw(delete)


def configure(settings: Any, kit: NatsKit) -> None:
    use_replication_settings(settings)
    settings.CONFIGSYNC_NATS_URL = "nats://127.0.0.1:4222"
    settings.CONFIGSYNC_GROUP_ID = kit.group
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"


@pytest.fixture
def nats_peer(nats_kit: NatsKit, settings: Any, db: None) -> Peer:
    configure(settings, nats_kit)
    return Peer.objects.create(name="nats", transport=Peer.TransportKind.NATS)


def consumer(kit: NatsKit, node: str) -> Any:
    async def read(js: Any) -> Any:
        return await js.consumer_info(stream_name(kit.group), durable_name(node))

    return kit.raw(read)


def versions(key: str) -> int:
    return RecordVersion.objects.filter(natural_key=key).count()


def publish_again(kit: NatsKit, writer: str, change: dict[str, Any]) -> None:
    """Publish ``change`` as ``writer`` would, under a new message id (outside the server's
    de-duplication: a duplicate the readers must recognise themselves)."""
    body = json.dumps(change).encode()

    async def publish(js: Any) -> None:
        headers = {
            MSG_ID_HEADER: uuid.uuid4().hex,
            MAC_HEADER: message_mac(secret=SECRET, group=kit.group, writer=writer, body=body),
        }
        await js.publish(f"configsync.{kit.group}.{writer}", body, headers=headers)

    kit.raw(publish)


def test_the_follower_applies_and_acknowledges_only_after_the_commit(
    nats_kit: NatsKit, nats_peer: Peer
) -> None:
    nats_kit.transport(node=OTHER).push([remote_change("F1", "one", node=OTHER)])
    # A reader that fetched the message without committing it leaves it unacknowledged.
    uncommitted = nats_kit.transport(node=LOCAL)
    assert [c["key"] for c in uncommitted.pull("", 10).changes] == ["F1"]
    assert consumer(nats_kit, LOCAL).num_ack_pending == 1
    assert not SystemConfig.objects.filter(key="F1").exists()

    result = nats_follow_once()

    assert result is not None and result.ok and result.pulled == 1
    assert SystemConfig.objects.get(key="F1").value == "one"
    info = consumer(nats_kit, LOCAL)
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 1
    assert versions("F1") == 1


def test_a_redelivered_or_republished_change_applies_once(
    nats_kit: NatsKit, nats_peer: Peer
) -> None:
    change = remote_change("R1", "once", node=OTHER)
    nats_kit.transport(node=OTHER).push([change])
    assert nats_follow_once().pulled == 1  # type: ignore[union-attr]

    publish_again(nats_kit, OTHER, change)  # duplicated outside the server's window
    again = nats_follow_once()

    assert again is not None and again.pulled == 0 and again.stale == 1
    assert versions("R1") == 1
    assert consumer(nats_kit, LOCAL).num_ack_pending == 0


def test_cycles_of_two_processes_on_one_consumer_never_apply_twice(
    nats_kit: NatsKit, nats_peer: Peer
) -> None:
    """The follower keeps its transport (and what it fetched) between cycles; the beat's
    cycles use one of their own. Interleaved on the same durable consumer, each reads from the
    committed checkpoint: no stale re-read of what the other applied."""
    other = nats_kit.transport(node=OTHER)
    follower = nats_kit.transport(node=LOCAL)
    pulled = []
    for index in range(6):
        other.push([remote_change(f"S{index}", str(index), node=OTHER)])
        if index % 2:
            pulled.append(sync_cycle(peer_id=nats_peer.pk).pulled)
        else:
            result = nats_follow_once(transport=follower)
            assert result is not None
            pulled.append(result.pulled)
    assert pulled == [1] * 6
    assert [versions(f"S{index}") for index in range(6)] == [1] * 6
    assert consumer(nats_kit, LOCAL).num_ack_pending == 0


def test_the_lag_is_reported_by_status_the_api_and_metrics(
    nats_kit: NatsKit, nats_peer: Peer, admin_client: Any, client: Any
) -> None:
    nats_kit.transport(node=OTHER).push([remote_change(f"L{i}", node=OTHER) for i in range(3)])
    behind = nats_status()
    assert behind.reachable and behind.followed and behind.lag == 3
    assert behind.stream_last_seq == 3 and behind.consumer == durable_name(LOCAL)

    nats_follow_once()

    shown = admin_client.get("/api/v1/sync/status").json()["nats"]
    assert shown["reachable"] and shown["lag"] == 0 and shown["stream_last_seq"] == 3
    metrics = client.get("/metrics").content.decode()
    assert "configsync_nats_consumer_lag 0.0" in metrics
    assert "configsync_nats_up 1.0" in metrics
    page = admin_client.get(reverse("admin:configsync_sync_overview")).content.decode()
    assert 'id="cs-nats-lag">0<' in page and 'data-reachable="yes"' in page


def test_the_cli_shows_the_lag_and_stores_a_snapshot(
    nats_kit: NatsKit, nats_peer: Peer, cli: Any
) -> None:
    nats_kit.transport(node=OTHER).push([remote_change("C1", node=OTHER)])
    once = cli("nats", "follow", "--once", "--json")
    assert once.code == 0 and json.loads(once.out)["pulled"] == 1
    stored = cli("nats", "snapshot", "--json")
    assert stored.code == 0 and json.loads(stored.out)["covers"] == 1
    shown = cli("nats", "status", "--json")
    document = json.loads(shown.out)
    assert document["lag"] == 0 and document["snapshot_covers"] == 1
    assert document["snapshot_writer"] == LOCAL
    text = cli("status")
    assert f"nats: stream {stream_name(nats_kit.group)}" in text.out
    assert "consumer lag 0" in text.out


def test_an_unreachable_stream_shows_in_status_and_the_unconfigured_one_is_null(
    settings: Any, admin_client: Any, db: None
) -> None:
    use_replication_settings(settings)
    assert admin_client.get("/api/v1/sync/status").json()["nats"]["configured"] is False
    settings.CONFIGSYNC_NATS_URL = f"nats://127.0.0.1:{free_port()}"
    down = nats_status()
    assert down.configured and not down.reachable and "unreachable" in down.error


def test_a_node_catches_up_from_the_snapshot_once_retention_dropped_messages(
    nats_kit: NatsKit, nats_peer: Peer, settings: Any
) -> None:
    settings.CONFIGSYNC_NATS_MAX_MSGS = 2
    writer = nats_kit.transport(node=A)
    changes = [remote_change(f"K{i}", str(i), node=A) for i in range(1, 6)]
    for change in changes:
        writer.push([change])  # one message each: the stream keeps the last two, 4 and 5
    assert writer.lag().stream_first_seq == 4

    with pytest.raises(SyncCycleError, match="no snapshot"):
        nats_follow_once()
    assert not SystemConfig.objects.filter(key__startswith="K").exists()

    writer.snapshot_write(covers=3, changes=changes[:3])  # node A's state up to sequence 3
    result = nats_follow_once()

    assert result is not None and result.ok and result.pulled == 5
    assert sorted(SystemConfig.objects.values_list("key", flat=True)) == [
        "K1",
        "K2",
        "K3",
        "K4",
        "K5",
    ]
    assert consumer(nats_kit, LOCAL).ack_floor.stream_seq == 5
    # This node's own snapshot now covers the whole stream, ciphertext and all.
    written = nats_snapshot_write()
    assert written.covers == 5 and written.items == 5
    latest = writer.snapshot_latest()
    assert latest is not None and latest.writer == LOCAL and latest.covers == 5


def test_a_snapshot_that_fails_the_groups_mac_is_skipped(
    nats_kit: NatsKit, nats_peer: Peer, settings: Any
) -> None:
    settings.CONFIGSYNC_NATS_MAX_MSGS = 1
    writer = nats_kit.transport(node=A)
    writer.push([remote_change("G1", node=A)])
    writer.push([remote_change("G2", node=A)])  # the stream keeps only the last: 1 is gone
    body = json.dumps(
        {
            "format": 1,
            "group": nats_kit.group,
            "writer": A,
            "covers": 9,
            "taken_ms": 0,
            "changes": [remote_change("FORGED", node=A)],
        }
    ).encode()
    mac = message_mac(secret="sk-not-the-group-secret", group=nats_kit.group, writer=A, body=body)

    async def forge(js: Any) -> None:
        store = await js.create_object_store(bucket=f"configsync_{nats_kit.group}_snap")
        await store.put("forged", mac.encode() + b"\n" + body)

    nats_kit.raw(forge)
    reader = nats_kit.transport(node=LOCAL)
    assert reader.snapshot_latest() is None
    assert reader.faults == ["snapshot forged: not one of this group's (skipped)"]
    with pytest.raises(SyncCycleError, match="no snapshot"):
        nats_follow_once()
    assert not SystemConfig.objects.filter(key__in=["FORGED", "G2"]).exists()


def test_an_idle_pull_is_one_round_trip_of_state_requests(nats_kit: NatsKit) -> None:
    nats_kit.transport(node=A).push([remote_change("I1", node=A)])
    reader = nats_kit.transport(node=LOCAL)
    cursor = reader.pull("", 10, with_log=True).next_cursor
    reader.log_record(direction="pull", session="s1", cursor=cursor)
    reader.close()
    again = nats_kit.transport(node=LOCAL)  # a new cycle's transport: the pool remembers
    again.log_get()
    connection = again._nc
    sent = connection.stats["out_msgs"]
    page = again.pull(cursor, 10, with_log=True)
    assert page.changes == [] and page.log is not None
    # the stream's state, the consumer's, the log: sent together, nothing fetched
    assert connection.stats["out_msgs"] - sent == 3


@pytest.mark.django_db
def test_the_follower_idles_when_nats_is_not_configured(settings: Any, cli: Any) -> None:
    use_replication_settings(settings)
    stop = threading.Event()
    follower = NatsFollower(stop=stop)
    thread = threading.Thread(target=follower.run)
    thread.start()
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert follower.stats.cycles == follower.stats.subscriptions == 0
    assert not SyncRun.objects.exists()
    once = cli("nats", "follow", "--once")
    assert once.code == 1 and "not configured" in once.err
    shown = cli("nats", "status", "--json")
    assert shown.code == 0 and json.loads(shown.out)["configured"] is False


@pytest.mark.django_db(transaction=True)
def test_the_follower_wakes_on_a_publish_and_stops(nats_kit: NatsKit, settings: Any) -> None:
    configure(settings, nats_kit)
    stop = threading.Event()
    follower = NatsFollower(stop=stop, snapshot_seconds=3600)

    def run() -> None:
        try:
            follower.run()
        finally:
            connection.close()  # this thread's own

    thread = threading.Thread(target=run)
    thread.start()
    try:
        nats_kit.transport(node=OTHER).push([remote_change("W1", "woken", node=OTHER)])
        for _ in range(600):  # bounded: at most a minute
            if SystemConfig.objects.filter(key="W1").exists():
                break
            stop.wait(0.1)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert SystemConfig.objects.get(key="W1").value == "woken"
    assert follower.stats.subscriptions >= 1 and follower.stats.cycles >= 1
    assert follower.stats.snapshots == 1  # the first one, after the first cycle


def test_close_leaves_the_pooled_connection_open(nats_kit: NatsKit) -> None:
    first = nats_kit.transport(node=A)
    first.log_get()
    connection = first._nc
    first.close()
    assert connection.is_connected
    second = nats_kit.transport(node=A)
    checked: list[str] = []
    original = second._ensure_stream

    async def spy() -> None:
        checked.append("stream")
        await original()

    second._ensure_stream = spy  # type: ignore[method-assign]
    second.pull("", 10)
    assert second._nc is connection and checked == []  # the pool remembered the checks


def test_the_system_check_names_bad_nats_settings(settings: Any) -> None:
    from configsync.replication.checks import check_nats

    settings.CONFIGSYNC_NATS_URL = ""
    settings.CONFIGSYNC_NATS_MAX_MSGS = -1
    assert [m.id for m in check_nats()] == ["configsync.E024"]
    settings.CONFIGSYNC_NATS_MAX_MSGS = 0
    assert check_nats() == []
    settings.CONFIGSYNC_NATS_URL = "nats://127.0.0.1:4222"
    settings.CONFIGSYNC_SYNC_SECRET = ""
    settings.CONFIGSYNC_GROUP_ID = "a.b"
    settings.CONFIGSYNC_NATS_TLS_CA_FILE = "/nonexistent/sk-CANARY-ca.pem"
    messages = [m.msg for m in check_nats()]
    assert len(messages) == 3 and {m.id for m in check_nats()} == {"configsync.E024"}
    assert "CONFIGSYNC_SYNC_SECRET" in messages[0] and "CONFIGSYNC_GROUP_ID" in messages[1]
    assert "CONFIGSYNC_NATS_TLS_CA_FILE" in messages[2] and "CANARY" not in messages[2]


# -- a server of our own, restarted --------------------------------------------------------


class OwnServer:
    """A nats-server with JetStream on a free 127.0.0.1 port and a store of its own."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        import socket

        self.process = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):  # bounded: up to 20 s for it to listen
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    break
                threading.Event().wait(0.1)
        self.stop()
        pytest.fail("our own nats-server did not start")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[OwnServer]:
    if not Path(NATS_SERVER).exists():
        pytest.skip("no nats-server binary to start a server of our own")
    server = OwnServer(tmp_path / "js")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.one_pass  # no database: the second pass on the other backend would repeat it
def test_the_first_call_after_a_server_restart_succeeds(own_server: OwnServer) -> None:
    group = f"r{uuid.uuid4().hex[:10]}"

    def link(node: str) -> NatsTransport:
        return NatsTransport(
            name="nats", node=node, url=own_server.url, group=group, secret=SECRET, timeout=5
        )

    writer, reader = link(A), link(LOCAL)
    writer.push([remote_change("BEFORE", node=A)])
    cursor = reader.pull("", 10).next_cursor
    assert cursor == "1"
    old = reader._nc

    own_server.stop()
    own_server.start()  # same port, same store: the stream survives

    writer.push([remote_change("AFTER", node=A)])  # the first call: no failure to absorb
    page = reader.pull(cursor, 10)
    assert [c["key"] for c in page.changes] == ["AFTER"] and page.next_cursor == "2"
    assert reader._nc is not old and old.is_closed
    for transport in (writer, reader):
        transport.close()
    for key in [key for key in _POOL if key[0] == own_server.url]:
        _LOOP.run(_POOL.pop(key).nc.close(), timeout=10)


def wait_for(condition: Any, *, stop: threading.Event, seconds: float = 60) -> bool:
    """Poll ``condition()`` every 0.1 s, at most ``seconds`` (a bound, not a timed assertion)."""
    for _ in range(int(seconds * 10)):
        if condition():
            return True
        stop.wait(0.1)
    return bool(condition())


@pytest.mark.django_db(transaction=True)
def test_the_follower_subscribes_again_after_a_server_restart(
    own_server: OwnServer, settings: Any
) -> None:
    use_replication_settings(settings)
    settings.CONFIGSYNC_NATS_URL = own_server.url
    settings.CONFIGSYNC_GROUP_ID = f"f{uuid.uuid4().hex[:10]}"
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    writer = NatsTransport(
        name="nats", node=A, url=own_server.url, group=settings.CONFIGSYNC_GROUP_ID, secret=SECRET
    )
    stop = threading.Event()
    follower = NatsFollower(stop=stop, snapshot_seconds=3600)

    def run() -> None:
        try:
            follower.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        writer.push([remote_change("BEFORE_RESTART", node=A)])
        assert wait_for(
            lambda: SystemConfig.objects.filter(key="BEFORE_RESTART").exists(), stop=stop
        )
        own_server.stop()
        own_server.start()
        writer.push([remote_change("AFTER_RESTART", node=A)])
        assert wait_for(
            lambda: SystemConfig.objects.filter(key="AFTER_RESTART").exists(), stop=stop
        )
    finally:
        stop.set()
        thread.join(timeout=60)
        writer.close()
        for key in [key for key in _POOL if key[0] == own_server.url]:
            _LOOP.run(_POOL.pop(key).nc.close(), timeout=10)
    assert not thread.is_alive()
    assert follower.stats.subscriptions >= 2  # subscribed again on the new connection
