"""The replication subsystem's own order: one sync policy, selectors that only read, services
that never import a task, no import cycle inside the subsystem, one typed conflict version."""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from configsync import tasks
from configsync.locks import named_lock
from configsync.models import Conflict, NodeClock, NodeIdentity, Peer
from configsync.replication.models.conflicts import KeptVersion
from configsync.replication.page import FeedPage
from configsync.replication.selectors.conflicts import conflicts_list
from configsync.replication.selectors.feed import (
    clock_hlc_ms,
    feed_last_cursor,
    feed_page,
    records_unreadable,
)
from configsync.replication.selectors.peers import peers_to_sync
from configsync.replication.selectors.status import sync_status
from configsync.replication.selectors.strategies import sync_strategies
from configsync.replication.services import sync as sync_policy
from configsync.services.node import node_id_reset_cache
from multinode import wait_until
from tests.support.replication import REMOTE
from tests.support.scripted_peer import ScriptedPeer

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
REPLICATION = ROOT / "configsync" / "replication"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_service_or_selector_of_replication_imports_a_task() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("services", "selectors")
        for path in (REPLICATION / folder).glob("*.py")
        if any(
            name == "configsync.tasks" or name.startswith("configsync.tasks.")
            for name in _imports(path)
        )
    ]
    assert offenders == []


def test_replication_selectors_never_reach_the_node_id_service() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (REPLICATION / "selectors").glob("*.py")
        if any(name.startswith("configsync.services") for name in _imports(path))
    ]
    assert offenders == []


def test_the_replication_subsystem_has_no_import_cycle() -> None:
    modules = {_module(path): path for path in REPLICATION.rglob("*.py")}
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_replication_selectors_only_read(settings: Any) -> None:
    settings.CONFIGSYNC_NODE_ID = ""
    NodeIdentity.objects.all().delete()  # made after migrate: a selector must not re-create it
    node_id_reset_cache()
    Peer.objects.create(name="cloud", base_url="http://127.0.0.1:9")
    try:
        with CaptureQueriesContext(connection) as queries:
            feed_page(node="node-given", cursor="", limit=10)
            feed_page(node="node-given", cursor="", limit=10, digest=True)
            feed_last_cursor()
            clock_hlc_ms()
            records_unreadable()
            report = sync_status(node="node-given")
            sync_strategies()
            list(conflicts_list())
            peers_to_sync()
    finally:
        node_id_reset_cache()
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == []
    assert report.node_id == "node-given"
    assert not NodeIdentity.objects.exists() and not NodeClock.objects.exists()


def test_the_cli_and_the_task_run_a_peer_under_one_lock(capsys: Any, monkeypatch: Any) -> None:
    peer = Peer.objects.create(name="cloud", base_url="http://127.0.0.1:9", node_id=REMOTE)
    monkeypatch.setattr("configsync.replication.cli.sync.BUSY_WAIT_SECONDS", 0)
    with named_lock(sync_policy.sync_lock_name(peer.pk), blocking=False) as held:
        assert held
        with pytest.raises(SystemExit) as exited:
            call_command("configsync", "sync", "--peer", "cloud")
        assert tasks.sync_peer.apply(args=[peer.pk]).get() is False
    assert exited.value.code == 1
    assert "peer cloud: busy, skipped" in capsys.readouterr().out


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="only Redis locks expire")
def test_a_cycle_holds_the_peer_lock_as_a_renewed_lease(monkeypatch: Any) -> None:
    """The peer lock of a running cycle lapses within one lease of its holder's death (the
    holder renews it): never the policy's whole expiry, which wedged a peer for ten minutes
    after ``kill -9`` of a worker mid-cycle (found by the chaos harness)."""
    import redis

    from configsync import locks

    peer = Peer.objects.create(name="cloud", base_url="http://127.0.0.1:9", node_id=REMOTE)
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    seen: list[int] = []

    class Watching(ScriptedPeer):
        def pull(self, cursor: str, limit: int, **kwargs: Any) -> FeedPage:
            key = f"configsync:lock:{sync_policy.sync_lock_name(peer.pk)}"
            seen.append(int(client.pttl(key)))
            return super().pull(cursor, limit, **kwargs)

    monkeypatch.setattr(
        "configsync.replication.services.link.transport_for", lambda _peer: Watching(node=REMOTE)
    )
    try:
        assert tasks.sync_peer.apply(args=[peer.pk]).get() is True
    finally:
        client.close()
    assert seen and all(0 < ttl <= locks.LEASE_SECONDS * 1000 for ttl in seen)
    assert locks.LEASE_SECONDS < sync_policy.SYNC_LOCK_TIMEOUT_SECONDS


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="only Redis locks expire")
def test_a_redis_lock_outlives_its_lease_while_held_and_frees_after_a_kill(
    monkeypatch: Any,
) -> None:
    import multiprocessing
    import signal

    import redis

    from configsync import locks

    monkeypatch.setattr(locks, "LEASE_SECONDS", 0.6)
    name = "chaos-lease-test"
    key = f"configsync:lock:{name}"
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    try:
        with locks.named_lock(name, timeout=60, blocking=False) as held:
            assert held
            time.sleep(1.5)  # past two leases: the holder's renewals keep it
            with locks.named_lock(name, timeout=60, blocking=False) as second:
                assert not second
        assert not client.exists(key)

        ready = multiprocessing.get_context("fork").Event()

        def hold() -> None:
            with locks.named_lock(name, timeout=600, blocking=False) as child_held:
                assert child_held
                ready.set()
                time.sleep(600)

        child = multiprocessing.get_context("fork").Process(target=hold, daemon=True)
        child.start()
        assert ready.wait(30)
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(10)
        # Killed mid-hold: the lock lapses within one lease, not the holder's 600 s.
        assert client.pttl(key) <= 600  # -2 once gone
        wait_until(lambda: not client.exists(key), timeout=10, what="the dead holder's lease")
        with locks.named_lock(name, timeout=60, blocking=False) as after:
            assert after
    finally:
        client.delete(key)
        client.close()


def test_a_conflict_gives_its_versions_typed() -> None:
    conflict = Conflict(
        model_label="configsync.systemconfig",
        natural_key="K",
        source="env-file:/x/.env",
        local_version={"hlc": "h1", "origin": "node-a", "deleted": False, "data": {"v": 1, "w": 2}},
        remote_version={"hlc": "env", "origin": "env-file", "deleted": True, "data": None},
        winner="remote",
    )
    assert conflict.local == KeptVersion("h1", "node-a", False, {"v": 1, "w": 2})
    assert conflict.remote.summary() == {"hlc": "env", "origin": "env-file", "deleted": True}
    assert conflict.local.describe() == "h1 from node-a (present)"
    assert conflict.remote.describe() == "env from env-file (deleted)"
    assert conflict.changed_fields() == ["v", "w"]
