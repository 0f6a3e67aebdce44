"""The reference model's accounting (:mod:`tests.chaos.model`), without any process: which
operations decide a record, which may go either way, and how lost acknowledgements of committed
writes and writes held for clock skew are counted."""

from __future__ import annotations

from configsync.replication.hlc import HLC
from tests.chaos.model import Op, digest, expected_state

SETTING = "configsync.systemconfig"
KEY = (SETTING, "K")


def _op(node: str, wall: int, value: str | None, **flags: bool) -> Op:
    return Op(node, SETTING, "K", value, str(HLC(wall, 0, f"node-{node}")), **flags)


def test_the_last_write_by_hlc_wins_and_a_delete_leaves_nothing() -> None:
    ops = [_op("a", 1000, "P:one"), _op("b", 2000, "P:two"), _op("a", 1500, "P:three")]
    expectation = expected_state(ops)
    assert expectation.state == {KEY: "P:two"}
    assert [op.value for op in expectation.losers[KEY]] == ["P:one", "P:three"]
    assert expected_state([*ops, _op("c", 3000, None)]).state == {}


def test_at_the_same_instant_a_delete_beats_a_write_whatever_the_node_ids() -> None:
    assert expected_state([_op("z", 1000, "P:w"), _op("a", 1000, None)]).state == {}
    assert expected_state([_op("a", 1000, "P:a"), _op("b", 1000, "P:b")]).state == {KEY: "P:b"}


def test_refused_operations_play_no_part_and_are_counted() -> None:
    expectation = expected_state([_op("a", 1000, "P:x"), _op("b", 2000, None, accepted=False)])
    assert expectation.state == {KEY: "P:x"}
    assert expectation.counts["refused"] == 1 and expectation.counts["acked"] == 1


def test_an_unacknowledged_later_write_may_go_either_way() -> None:
    expectation = expected_state([_op("a", 1000, "P:sure"), _op("b", 2000, "P:maybe", acked=False)])
    assert expectation.state == {}
    assert expectation.uncertain == {KEY: {"P:sure", "P:maybe"}}
    assert expectation.check({KEY: "P:sure"}) == [] and expectation.check({KEY: "P:maybe"}) == []
    assert expectation.check({}) != []  # gone altogether is neither
    assert expectation.counts["unknown"] == 1


def test_a_lost_acknowledgement_of_a_committed_write_is_as_sure_as_an_acknowledgement() -> None:
    ops = [_op("a", 1000, "P:old"), _op("b", 2000, "P:new", acked=False, committed=True)]
    expectation = expected_state(ops)
    assert expectation.state == {KEY: "P:new"} and expectation.uncertain == {}
    assert expectation.check({KEY: "P:old"}) == [
        "('configsync.systemconfig', 'K'): expected 'P:new', node has 'P:old'"
    ]
    assert expectation.counts["ack_lost_committed"] == 1
    assert expectation.counts["ack_lost_committed_won"] == 1
    assert "ack_lost_committed 1" in expectation.verdict()


def test_a_committed_write_that_loses_is_not_required() -> None:
    ops = [_op("a", 3000, "P:later"), _op("b", 2000, "P:lost-ack", acked=False, committed=True)]
    expectation = expected_state(ops)
    assert expectation.state == {KEY: "P:later"}
    assert expectation.counts["ack_lost_committed_won"] == 0


def test_a_committed_write_whose_timestamp_is_gone_is_reported_lost() -> None:
    lost = Op("a", SETTING, "K", "P:gone", None, acked=False, committed=True)
    expectation = expected_state([lost])
    assert expectation.lost == [lost]
    assert expectation.check({}) == [
        "('configsync.systemconfig', 'K'): committed write 'P:gone' on a lost"
    ]


def test_writes_held_for_skew_count_like_any_accepted_write() -> None:
    held = _op("c", 5000, "P:ahead", held_for_skew=True)
    expectation = expected_state([_op("a", 1000, "P:x"), held, _op("b", 2000, None)])
    assert expectation.state == {KEY: "P:ahead"}
    assert expectation.counts["held_for_skew"] == 1 and expectation.counts["held_won"] == 1


def test_the_digest_ignores_absent_records_and_order() -> None:
    one = {KEY: "P:x", (SETTING, "L"): "S:y"}
    two = {(SETTING, "L"): "S:y", KEY: "P:x", (SETTING, "M"): None}
    assert digest(one) == digest(two) != digest({KEY: "P:x"})
