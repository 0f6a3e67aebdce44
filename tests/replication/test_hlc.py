"""The hybrid logical clock: text form, order, tick/receive rules, version vectors, LWW."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configsync.replication.hlc import (
    HLC,
    HLCParseError,
    lww_wins,
    receive,
    tick,
    vv_leq,
    vv_merge,
)

stamps = st.builds(
    HLC,
    st.integers(min_value=0, max_value=10**15 - 1),
    st.integers(min_value=0, max_value=10**8 - 1),
    st.from_regex(r"[a-z0-9\-]{1,20}", fullmatch=True),
)


@given(stamps, stamps)
def test_text_form_sorts_like_the_tuple(a: HLC, b: HLC) -> None:
    assert (str(a) < str(b)) == (a < b)
    assert HLC.parse(str(a)) == a


@pytest.mark.parametrize(
    "text", ["", "12:3:n", "000000000000001:00000000:", "x" * 30, None, 5, "1:2:3:4"]
)
def test_parse_rejects_garbage(text: object) -> None:
    with pytest.raises(HLCParseError):
        HLC.parse(text)


def test_tick_follows_physical_time_and_counts_when_it_stalls() -> None:
    assert tick(100, 7, now_ms=200) == (200, 0)
    assert tick(200, 0, now_ms=200) == (200, 1)
    # Physical clock went backwards: the HLC does not.
    assert tick(200, 1, now_ms=150) == (200, 2)


def test_receive_moves_past_the_remote_stamp() -> None:
    remote = HLC(500, 3, "b")
    wall, logical = receive(100, 0, remote, now_ms=120)
    assert (wall, logical) == (500, 4)
    assert HLC(wall, logical, "a") > remote
    assert receive(500, 9, remote, now_ms=120) == (500, 10)
    assert receive(100, 0, remote, now_ms=900) == (900, 0)
    assert receive(600, 2, remote, now_ms=100) == (600, 3)


def test_version_vectors() -> None:
    a = {"n1": str(HLC(1, 0, "n1"))}
    b = {"n1": str(HLC(1, 0, "n1")), "n2": str(HLC(2, 0, "n2"))}
    c = {"n3": str(HLC(3, 0, "n3"))}
    assert vv_leq(a, b) and not vv_leq(b, a)
    assert not vv_leq(a, c) and not vv_leq(c, a)
    assert vv_leq({}, a)
    merged = vv_merge(b, c)
    assert vv_leq(b, merged) and vv_leq(c, merged) and len(merged) == 3


def test_lww_later_instant_wins_whatever_the_node() -> None:
    early, late = HLC(100, 5, "zzz"), HLC(100, 6, "aaa")
    assert lww_wins(late, False, early, False)
    assert not lww_wins(early, False, late, False)
    assert lww_wins(late, False, early, True)  # a later update beats an earlier delete


def test_lww_at_an_equal_instant_delete_beats_update() -> None:
    update, delete = HLC(100, 5, "zzz"), HLC(100, 5, "aaa")
    assert lww_wins(delete, True, update, False)
    assert not lww_wins(update, False, delete, True)


def test_lww_at_an_equal_instant_and_kind_the_greater_node_wins() -> None:
    a, b = HLC(100, 5, "node-a"), HLC(100, 5, "node-b")
    assert lww_wins(b, False, a, False) and not lww_wins(a, False, b, False)
    assert lww_wins(b, True, a, True)


@given(stamps, st.booleans(), stamps, st.booleans())
def test_lww_is_a_total_order_on_distinct_versions(
    a: HLC, a_del: bool, b: HLC, b_del: bool
) -> None:
    if a == b:
        return
    assert lww_wins(a, a_del, b, b_del) != lww_wins(b, b_del, a, a_del)


def test_a_parsed_timestamp_prints_as_its_canonical_text() -> None:
    """``str`` of a parsed timestamp is its text (kept, not formatted again) when that is the
    canonical form, and the ASCII form when the text used another script's digits."""
    text = "001764620000000:00000042:node-a"
    assert str(HLC.parse(text)) == text == str(HLC(1764620000000, 42, "node-a"))
    arabic = "".join(chr(0x660 + int(c)) if c.isdigit() else c for c in text)
    assert str(HLC.parse(arabic)) == text
    assert HLC.parse(arabic) == HLC.parse(text) and hash(HLC.parse(arabic)) == hash(HLC.parse(text))
