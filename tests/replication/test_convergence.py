"""Property: whatever the arrival order, concurrent versions converge on the LWW maximum."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configsync.models import Conflict, ReplicatedRecord, SystemConfig
from configsync.replication.hlc import HLC, lww_wins, physical_now_ms
from configsync.replication.services.apply import changes_apply
from tests.support.replication import remote_change

NODES = ["node-a", "node-b", "node-c", "node-d"]

versions = st.lists(
    st.tuples(
        st.sampled_from(NODES),
        st.integers(min_value=0, max_value=3),  # wall offset: many equal instants
        st.integers(min_value=0, max_value=2),
        st.booleans(),
    ),
    min_size=2,
    max_size=4,
    unique_by=lambda v: v[0],
)


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(versions, st.randoms(use_true_random=False))
def test_every_order_converges_on_the_lww_winner(spec: list, rnd: object) -> None:
    base = physical_now_ms()
    items = []
    for node, offset, logical, deleted in spec:
        stamp = HLC(base + offset, logical, node)
        items.append(
            (stamp, deleted, remote_change("K", node, node=node, hlc=str(stamp), deleted=deleted))
        )
    winner = items[0]
    for candidate in items[1:]:
        if lww_wins(candidate[0], candidate[1], winner[0], winner[1]):
            winner = candidate
    order = list(items)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    Conflict.objects.all().delete()
    ReplicatedRecord.objects.all().delete()
    SystemConfig.objects.all().delete()
    ReplicatedRecord.objects.all().delete()  # the tombstones those deletes wrote
    for _, _, change in order:
        changes_apply(changes=[change], source_node=change["origin"], source_name="p")
    rec = ReplicatedRecord.objects.get(natural_key="K")
    assert rec.hlc == str(winner[0])
    assert rec.deleted == winner[1]
    config = SystemConfig.objects.filter(key="K").first()
    assert (config is None) == winner[1]
    if config is not None:
        assert config.value == winner[0].node
    assert Conflict.objects.count() == len(items) - 1
    # Re-delivering everything changes nothing.
    for _, _, change in order:
        results = changes_apply(changes=[change], source_node=change["origin"], source_name="p")
        assert results[0].status == "stale"
