"""Three real nodes in a line, ``a - b - c``: changes relay through ``b`` both ways."""

from __future__ import annotations

import pytest

from multinode import Cluster, unique_key, wait_until

pytestmark = pytest.mark.multinode

CONVERGE = 120.0


def test_changes_relay_along_the_line(three_nodes_line: Cluster) -> None:
    a, b, c = (three_nodes_line[name] for name in ("a", "b", "c"))
    key = unique_key("RELAY")

    a.cli("set", key, "from-a", check=True)
    wait_until(lambda: c.config_value(key) == "from-a", timeout=CONVERGE, what="a -> b -> c")
    assert b.config_value(key) == "from-a"

    c.cli("set", key, "from-c", check=True)
    wait_until(lambda: a.config_value(key) == "from-c", timeout=CONVERGE, what="c -> b -> a")

    other = unique_key("RELAY_NEW")
    b.cli("set", other, "from-b", check=True)
    c.cli("delete", key, check=True)
    wait_until(
        lambda: not a.config_exists(key) and a.config_value(other) == "from-b",
        timeout=CONVERGE,
        what="delete on c and create on b reach a",
    )
    wait_until(lambda: c.config_value(other) == "from-b", timeout=CONVERGE, what="b -> c")
    # Every node ends with the same versions of both records.
    query = (
        "SELECT natural_key, hlc, deleted FROM configsync_replicatedrecord "
        "WHERE natural_key IN (%s, %s) ORDER BY natural_key"
    )
    wait_until(
        lambda: (
            a.sql(query, [key, other]) == b.sql(query, [key, other]) == c.sql(query, [key, other])
        ),
        timeout=CONVERGE,
        what="identical metadata on every node",
    )
