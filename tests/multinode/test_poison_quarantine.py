"""A poison change reaching a node over real HTTP is quarantined; the group keeps replicating.

Node ``a`` serves, in one page of its feed, a change no node may store (a version of an ``int``
setting whose value is ``poison-value``, as a node on older code could have relayed) between two
good ones. Node ``b`` must apply the good ones, keep the bad one in quarantine with its reason, move
its cursor on, and go on replicating in both directions.
"""

from __future__ import annotations

import pytest

from multinode import Cluster, unique_key, wait_until

pytestmark = pytest.mark.multinode

CONVERGE = 90.0

_POISON = """
from django.db import transaction
from configsync.models import ReplicatedRecord
from configsync.services.system_config import system_config_set

with transaction.atomic():
    system_config_set(key="{good1}", value="one")
    system_config_set(key="{poison}", value=5, value_type="int")
    system_config_set(key="{good2}", value="two")
    record = ReplicatedRecord.objects.get(natural_key="{poison}")
    poisoned = {{**record.data, "value": "poison-value"}}
    ReplicatedRecord.objects.filter(pk=record.pk).update(data=poisoned)
"""


def test_a_poison_item_is_quarantined_and_the_rest_replicates(two_nodes: Cluster) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    good1, poison, good2 = unique_key("GOOD1"), unique_key("POISON"), unique_key("GOOD2")
    a.shell(_POISON.format(good1=good1, poison=poison, good2=good2))

    wait_until(
        lambda: b.config_value(good1) == "one" and b.config_value(good2) == "two",
        timeout=CONVERGE,
        what="the good items of the page reach b",
    )

    def quarantined() -> list[dict[str, object]]:
        response = b.get("/api/v1/sync/quarantine/")
        response.raise_for_status()
        return [row for row in response.json() if row["key"] == poison]

    (row,) = wait_until(quarantined, timeout=CONVERGE, what="b quarantines the poison")
    assert row["status"] == "open" and "value" in str(row["reason"])
    assert "poison-value" not in str(row)
    assert not b.config_exists(poison)

    # The group keeps going, both ways, after the poison.
    after = unique_key("AFTER")
    a.cli("set", after, "a-later", check=True)
    wait_until(lambda: b.config_value(after) == "a-later", timeout=CONVERGE, what="a -> b")
    back = unique_key("BACK")
    b.cli("set", back, "b-later", check=True)
    wait_until(lambda: a.config_value(back) == "b-later", timeout=CONVERGE, what="b -> a")

    def last_run_of_b_ok() -> bool:
        runs = b.sql(
            "SELECT ok FROM configsync_syncrun WHERE finished_at IS NOT NULL ORDER BY id DESC"
        )
        return bool(runs) and runs[0][0] in (True, 1)

    # b's cycles with a (pull of a's feed, poison included) succeed.
    wait_until(last_run_of_b_ok, timeout=CONVERGE, what="b's cycles with a succeed")
    listing = b.cli("quarantine", check=True)
    assert poison in listing.stdout
