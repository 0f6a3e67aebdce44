"""History and rollback across two real nodes: a rollback on ``a`` is a new change that reaches
``b`` and wins there; ``b``'s history shows the version from peer ``a``. Waits poll with generous
deadlines; nothing asserts how long anything took."""

from __future__ import annotations

import json
from typing import Any

import pytest

from multinode import Cluster, Node, unique_key, wait_until
from tests.factories import CANARY_SECRET

pytestmark = pytest.mark.multinode

CONVERGE = 90.0


def history(node: Node, key: str) -> list[dict[str, Any]]:
    result = node.cli("history", key, "--json", check=True)
    versions: list[dict[str, Any]] = json.loads(result.stdout)["versions"]
    return versions


def test_a_rollback_on_a_reaches_b_and_wins(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    key = unique_key("ROLLBACK")
    a.cli("set", key, "good", check=True)
    wait_until(lambda: b.config_value(key) == "good", timeout=CONVERGE, what="good a -> b")
    a.cli("set", key, "bad", check=True)
    wait_until(lambda: b.config_value(key) == "bad", timeout=CONVERGE, what="bad a -> b")

    numbers = {v["values"]["value"]: v["version"] for v in history(a, key)}
    rolled = json.loads(a.cli("rollback", key, str(numbers["good"]), "--json", check=True).stdout)
    assert rolled["rolled_back_to"] == numbers["good"]
    assert a.config_value(key) == "good"

    wait_until(lambda: b.config_value(key) == "good", timeout=CONVERGE, what="rollback a -> b")
    newest = history(b, key)[0]
    assert newest["current"] and newest["values"]["value"] == "good"
    assert newest["origin_node"] == a.node_id and newest["via"] == "peer"
    assert newest["hlc"] == rolled["hlc"]
    assert [c["field"] for c in newest["changes"]] == ["value"]

    # It stays the winner: further cycles in both directions change nothing.
    b.cli("sync", check=True)
    a.cli("sync", check=True)
    assert a.config_value(key) == "good" and b.config_value(key) == "good"
    assert history(a, key)[0]["version"] == rolled["version"]


def test_a_secret_rolled_back_on_a_reads_on_b_and_no_history_shows_it(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    key = unique_key("ROLLSECRET")
    replaced = "sk-CANARY-replaced-value"
    a.cli("set", key, "-", "--sensitive", stdin=CANARY_SECRET + "\n", check=True)
    a.cli("set", key, "-", "--sensitive", stdin=replaced + "\n", check=True)

    def revealed_on_b() -> str | None:
        result = b.cli("get", key, "--reveal")
        return result.stdout.strip().splitlines()[-1] if result.returncode == 0 else None

    wait_until(lambda: revealed_on_b() == replaced, timeout=CONVERGE, what="secret a -> b")
    a.cli("rollback", key, "1", check=True)
    wait_until(lambda: revealed_on_b() == CANARY_SECRET, timeout=CONVERGE, what="rollback a -> b")

    for node in (a, b):
        text = node.cli("history", key, "--json", check=True).stdout
        assert CANARY_SECRET not in text and replaced not in text
        api = node.get(f"/api/v1/configs/system/{key}/history/?reveal=true")
        assert api.status_code == 200
        assert CANARY_SECRET not in api.text and replaced not in api.text
    assert history(b, key)[0]["origin_node"] == a.node_id
