"""Fuzzed bucket documents (``transports/bucket/documents.py``: sealed segments and snapshots,
object keys) as a reader finds them in a bucket someone else can write to.

Properties: unsealing any bytes at any key answers the items or raises ``Damaged`` (a reason,
never a value); a sealed document mutated a little is refused or still holds exactly its items
(whitespace JSON ignores), never other items; sealing and unsealing is the identity, and a
document is accepted only at the key (kind, group, writer, number) and under the secret it was
sealed for; a snapshot's items are entries in origin order or ``Damaged``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configsync.replication.transports.bucket.documents import (
    MAX_SEQ,
    SEGMENT,
    SNAPSHOT,
    Damaged,
    Layout,
    seal,
    segment_changes,
    seq_of,
    snapshot_entries,
    unseal,
)
from tests.fuzz.strategies import FUZZ, JSON_VALUE, TEXT, json_bytes, mutated, mutated_bytes
from tests.support.replication import REMOTE, remote_change

GROUP = "default"
SECRET = "bucket-fuzz-secret-not-real"
WHERE = {"group": GROUP, "writer": REMOTE, "seq": 7, "secret": SECRET}
SEGMENT_ITEMS = [remote_change("A"), remote_change("B", deleted=True)]
SNAPSHOT_ITEMS = [[1, 0, remote_change("A")], [3, 2, remote_change("B")]]
KINDS = st.sampled_from([(SEGMENT, SEGMENT_ITEMS), (SNAPSHOT, SNAPSHOT_ITEMS)])


def _storable(value: Any) -> bool:
    """Whether ``value`` holds only text a node stores (no surrogate code points: a feed never
    carries one, and two in a row come back from JSON as the one character they encode)."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _unsealed(body: bytes, kind: str, **where: Any) -> list[Any] | None:
    try:
        items = unseal(body, kind=kind, **{**WHERE, **where})
    except Damaged as exc:
        assert exc.reason and "sk-CANARY" not in exc.reason
        return None
    assert isinstance(items, list)
    return items


def _read(kind: str, items: list[Any], upto: int = 7) -> Any:
    try:
        return segment_changes(items) if kind == SEGMENT else snapshot_entries(items, upto=upto)
    except Damaged as exc:
        assert exc.reason
        return None


@FUZZ
@given(kind=KINDS, data=st.data())
def test_any_body_at_a_key_is_its_items_or_damaged(
    kind: tuple[str, list[Any]], data: st.DataObject
) -> None:
    name, items = kind
    sealed = seal(kind=name, items=items, **WHERE)
    document = json.loads(sealed)
    body = data.draw(
        st.one_of(
            st.binary(max_size=200),
            JSON_VALUE.map(json_bytes),
            mutated_bytes(sealed),
            mutated(document).map(json_bytes),
        )
    )
    got = _unsealed(body, name)
    if got is not None:
        # Only the signed bytes are accepted: what came out is what was sealed (the header may
        # be respelled, e.g. with spaces, but not the items).
        assert got == items
        _read(name, got)


@FUZZ
@given(
    kind=KINDS,
    items=st.lists(JSON_VALUE, max_size=4).filter(_storable),
    secret=st.sampled_from(["", SECRET]),
)
def test_sealing_round_trips_only_at_its_own_key_and_secret(
    kind: tuple[str, list[Any]], items: list[Any], secret: str
) -> None:
    name, _ = kind
    where = {**WHERE, "secret": secret}
    try:
        body = seal(kind=name, items=items, **where)
    except ValueError:  # NaN or infinity: not JSON, never sealed
        return
    assert unseal(body, kind=name, **where) == items
    _read(name, items)
    others = [
        {"kind": SNAPSHOT if name == SEGMENT else SEGMENT},
        {"group": "other"},
        {"writer": "node-other"},
        {"seq": 8},
    ]
    if secret:
        others.append({"secret": "another-secret"})
    for other in others:
        assert _unsealed(body, **{"kind": name, **where, **other}) is None


@FUZZ
@given(
    items=st.one_of(mutated(SNAPSHOT_ITEMS), st.lists(JSON_VALUE, max_size=4)),
    upto=st.integers(-1, 10),
)
def test_snapshot_items_are_entries_in_order_or_damaged(items: Any, upto: int) -> None:
    if not isinstance(items, list):
        return
    entries = _read(SNAPSHOT, items, upto=upto)
    if entries is not None:
        origins = [(e.seq, e.index) for e in entries]
        assert origins == sorted(set(origins)) and all(1 <= s <= upto for s, _ in origins)


@FUZZ
@given(
    key=st.one_of(
        TEXT, st.builds("g/segments/{}/{}.json".format, TEXT, st.integers(-5, MAX_SEQ + 5))
    )
)
def test_any_object_key_is_a_sequence_number_or_none(key: str) -> None:
    layout = Layout(prefix="", group="g")
    seq = seq_of(key, layout.segments_of(REMOTE))
    assert seq is None or (0 <= seq <= MAX_SEQ and key == layout.segment(REMOTE, seq))


@pytest.mark.parametrize("member", ["sha256", "hmac"])
@pytest.mark.parametrize("text", ["é" * 64, "\ud800", "0" * 63 + "\u0660"])
def test_a_checksum_or_signature_of_any_text_is_damage(member: str, text: str) -> None:
    """Found by the atheris harness: a non-ASCII ``sha256`` (or ``hmac``) made ``unseal`` raise
    ``TypeError`` from ``hmac.compare_digest`` instead of ``Damaged``."""
    document = json.loads(seal(kind=SEGMENT, items=SEGMENT_ITEMS, **WHERE))
    document[member] = text
    body = json.dumps(document).encode()
    assert _unsealed(body, SEGMENT) is None
    assert (
        _unsealed(
            json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass"), SEGMENT
        )
        is None
    )
