"""Two real nodes (separate processes and databases, real HTTP, Celery worker and beat).

They converge on every kind of edit without anyone running ``sync`` by hand: push on write and
the beat do it. Waits poll with generous deadlines; nothing asserts how long anything took.
"""

from __future__ import annotations

import json

import pytest

from multinode import Cluster, unique_key, wait_until
from tests.factories import CANARY_SECRET

pytestmark = pytest.mark.multinode

CONVERGE = 90.0


def test_edit_on_a_reaches_b_and_back(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    key = unique_key("EDIT")

    a.cli("set", key, "from-a", check=True)
    wait_until(lambda: b.config_value(key) == "from-a", timeout=CONVERGE, what="a -> b")

    b.cli("set", key, "from-b", check=True)
    wait_until(lambda: a.config_value(key) == "from-b", timeout=CONVERGE, what="b -> a")

    result = a.cli("get", key, check=True)
    assert result.stdout.strip().splitlines()[-1] == "from-b"


def test_delete_replicates(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    key = unique_key("DELETE")
    b.cli("set", key, "doomed", check=True)
    wait_until(lambda: a.config_value(key) == "doomed", timeout=CONVERGE, what="create")

    a.cli("delete", key, check=True)
    wait_until(lambda: not b.config_exists(key), timeout=CONVERGE, what="delete a -> b")

    assert b.cli("get", key).returncode == 1
    # Not resurrected by the next cycles: the tombstone wins on both sides.
    b.cli("sync", check=True)
    assert not a.config_exists(key) and not b.config_exists(key)


def test_sensitive_value_travels_encrypted(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    key = unique_key("SECRET")
    a.cli("set", key, "-", "--sensitive", stdin=CANARY_SECRET + "\n", check=True)

    def raw_on_b() -> list[tuple[object, ...]]:
        return b.sql(
            "SELECT value, secret_value FROM configsync_systemconfig WHERE key = %s", [key]
        )

    rows = wait_until(raw_on_b, timeout=CONVERGE, what="secret reaches b")
    value, ciphertext = rows[0]
    assert value == ""
    assert ciphertext and CANARY_SECRET not in str(ciphertext)

    revealed = b.cli("get", key, "--reveal", check=True)
    assert revealed.stdout.strip().splitlines()[-1] == CANARY_SECRET
    masked = b.cli("get", key, check=True)
    assert CANARY_SECRET not in masked.stdout

    feed_rows = a.sql("SELECT data FROM configsync_replicatedrecord WHERE natural_key = %s", [key])
    assert feed_rows and CANARY_SECRET not in str(feed_rows[0][0])
    assert CANARY_SECRET not in two_nodes["a"].logs()
    assert CANARY_SECRET not in two_nodes["b"].logs()


def test_status_api_and_cli_report_the_peer(two_nodes: Cluster) -> None:
    a = two_nodes["a"]
    key = unique_key("STATUS")
    a.cli("set", key, "x", check=True)

    def synced() -> dict[str, object] | None:
        peers = a.sync_status()["peers"]
        peer = next((p for p in peers if p["name"] == "b"), None)
        return peer if peer and peer["last_success_at"] and peer["changes_behind"] == 0 else None

    peer = wait_until(synced, timeout=CONVERGE, what="status shows b in sync")
    assert peer["enabled"] is True
    assert peer["success_rate"] is not None and peer["success_rate"] > 0

    cli = a.cli("status", "--json", check=True)
    report = json.loads(cli.stdout)
    assert report["node_id"] == a.node_id
    assert [p["name"] for p in report["peers"]] == ["b"]

    triggered = a.post("/api/v1/sync/trigger", json={})
    assert triggered.status_code == 202
    assert [p["name"] for p in triggered.json()["enqueued"]] == ["b"]

    metrics = a.session().get(a.base_url + "/metrics", timeout=15)
    assert metrics.status_code == 200
    assert 'configsync_sync_runs_total{outcome="ok",peer="b",transport="http"}' in metrics.text


def test_concurrent_edits_same_winner_one_conflict(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    key = unique_key("RACE")
    a.cli("set", key, "base", check=True)
    wait_until(lambda: b.config_value(key) == "base", timeout=CONVERGE, what="base value")

    # Cut them off from each other: no worker runs on either side while both edit the key.
    a.stop("celery")
    b.stop("celery")
    try:
        a.cli("set", key, "edit-on-a", check=True)
        b.cli("set", key, "edit-on-b", check=True)
        assert a.config_value(key) == "edit-on-a" and b.config_value(key) == "edit-on-b"
    finally:
        a.start_celery()
        b.start_celery()

    wait_until(
        lambda: a.config_value(key) == b.config_value(key), timeout=CONVERGE, what="same winner"
    )
    winner = a.config_value(key)
    assert winner in {"edit-on-a", "edit-on-b"}

    def open_conflicts(node_name: str) -> int:
        rows = two_nodes[node_name].sql(
            "SELECT COUNT(*) FROM configsync_conflict WHERE natural_key = %s AND status = %s",
            [key, "open"],
        )
        return int(rows[0][0])

    wait_until(lambda: open_conflicts("a") == 1 and open_conflicts("b") == 1, timeout=CONVERGE)
    # Further cycles neither flip the winner nor record the conflict again.
    a.cli("sync", check=True)
    b.cli("sync", check=True)
    assert a.config_value(key) == b.config_value(key) == winner
    assert open_conflicts("a") == 1 and open_conflicts("b") == 1
