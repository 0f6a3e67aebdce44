"""The bucket transport's own behaviour against a real S3-compatible server (moto's standalone
server, ``tests.support.kit_bucket``): layout, segments and their checksums, pagination and
cursors, the cost of an idle pull, snapshots, retention, secrets, errors, and a real sync cycle.
What every transport keeps is ``test_contract.py``; convergence of real nodes sharing a bucket is
in ``tests/multinode``.

Requests are counted with a botocore event hook on the client (``before-send.s3.*``): a count,
never a time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from configsync.models import Conflict, Peer, SyncRun, SystemConfig
from configsync.replication.errors import TransportError
from configsync.replication.selectors.feed import feed_page
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.replication.services.diff import sync_diff
from configsync.replication.transports.bucket import BucketTransport
from configsync.replication.transports.bucket.documents import SEGMENT, seal
from configsync.services.system_config import system_config_set
from tests.support.kit_bucket import WRONG_SECRET_KEY, BucketKit, bucket_kit
from tests.support.replication import LOCAL, OTHER, SECRET, remote_change

__all__ = ["bucket_kit"]  # the fixture, imported for this module

A, B, C = "node-a", "node-b", "node-c"
ROOT = "configsync/default/"


def keys(kit: BucketKit, prefix: str = "") -> list[str]:
    client = kit.server.client()
    found: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=kit.bucket, Prefix=prefix):
        found += [item["Key"] for item in page.get("Contents", [])]
    client.close()
    return found


def body(kit: BucketKit, key: str) -> bytes:
    client = kit.server.client()
    data = bytes(client.get_object(Bucket=kit.bucket, Key=key)["Body"].read())
    client.close()
    return data


def upload(kit: BucketKit, key: str, data: bytes) -> None:
    client = kit.server.client()
    client.put_object(Bucket=kit.bucket, Key=key, Body=data)
    client.close()


def segment_key(writer: str, seq: int) -> str:
    return f"{ROOT}segments/{writer}/{seq:012d}.json"


def batch(writer: str, *names: str, value: str = "v") -> list[dict[str, Any]]:
    return [remote_change(name, value, node=writer) for name in names]


def counting(transport: BucketTransport) -> Counter[str]:
    """Counts the transport's requests by operation (``ListObjectsV2``, ``GetObject``, …)."""
    seen: Counter[str] = Counter()

    def hook(event_name: str, **_: Any) -> None:
        seen[event_name.rsplit(".", 1)[-1]] += 1

    transport.client.meta.events.register("before-send.s3.*", hook)
    return seen


def read_all(link: BucketTransport, cursor: str = "", limit: int = 100) -> tuple[list[str], str]:
    """Every change after ``cursor`` as ``writer:key`` (pages of ``limit``) and the last cursor."""
    seen: list[str] = []
    for _ in range(100):
        page = link.pull(cursor, limit)
        seen += [f"{c['origin']}:{c['key']}" for c in page.changes]
        cursor = page.next_cursor
        if not page.has_more:
            return seen, cursor
    raise AssertionError("the feed did not end")


# -- layout ----------------------------------------------------------------------------------


def test_layout_manifest_and_segments(bucket_kit: BucketKit) -> None:
    a = bucket_kit.link(node=A)
    answer = a.push(batch(A, "K1", "K2"))
    a.push(batch(A, "K3"))

    assert answer.node == "bucket.default"
    assert answer.results == [{"status": "applied"}, {"status": "applied"}]
    assert sorted(keys(bucket_kit)) == [
        f"{ROOT}group.json",
        segment_key(A, 1),
        segment_key(A, 2),
    ]
    assert json.loads(body(bucket_kit, f"{ROOT}group.json")) == {
        "format": 1,
        "group": "default",
        "kind": "group",
    }
    first = json.loads(body(bucket_kit, segment_key(A, 1)))
    assert {k: first[k] for k in ("format", "kind", "group", "writer", "seq", "count")} == {
        "format": 1,
        "kind": "segment",
        "group": "default",
        "writer": A,
        "seq": 1,
        "count": 2,
    }
    assert [c["key"] for c in first["items"]] == ["K1", "K2"]
    assert len(first["sha256"]) == 64 and len(first["hmac"]) == 64  # SYNC_SECRET is set
    assert a.describe() == f"r2 (bucket {bucket_kit.bucket} at {a.host})"
    assert a.pull("", 10).changes == []  # its own writes are echoes
    assert [c["key"] for c in a.pull("", 10, echoes=True).changes] == ["K1", "K2", "K3"]


def test_an_empty_push_writes_nothing(bucket_kit: BucketKit) -> None:
    assert bucket_kit.link(node=A).push([]).results == []
    assert keys(bucket_kit, f"{ROOT}segments/") == []


def test_a_prefix_holding_another_group_is_refused(bucket_kit: BucketKit) -> None:
    upload(bucket_kit, f"{ROOT}group.json", b'{"format":1,"group":"elsewhere","kind":"group"}')
    link = bucket_kit.link(node=A)
    for call in (lambda: link.pull("", 10), lambda: link.push(batch(A, "K"))):
        with pytest.raises(TransportError, match="replication group 'elsewhere'"):
            call()
    assert keys(bucket_kit, f"{ROOT}segments/") == []


def test_groups_share_a_bucket_without_seeing_each_other(bucket_kit: BucketKit) -> None:
    bucket_kit.link(node=A, group="blue").push(batch(A, "BLUE"))
    bucket_kit.link(node=A, group="green").push(batch(A, "GREEN"))

    page = bucket_kit.link(node=B, group="blue").pull("", 10)
    assert page.node == "bucket.blue" and [c["key"] for c in page.changes] == ["BLUE"]


# -- reading ---------------------------------------------------------------------------------


def test_two_writers_and_a_reader_page_across_and_inside_segments_and_resume(
    bucket_kit: BucketKit,
) -> None:
    a, b = bucket_kit.link(node=A), bucket_kit.link(node=B)
    a.push(batch(A, "A1", "A2", "A3"))
    b.push(batch(B, "B1"))
    a.push(batch(A, "A4"))
    b.push(batch(B, "B2", "B3"))
    reader = bucket_kit.link(node=C)

    first = reader.pull("", 2)
    assert [c["key"] for c in first.changes] == ["A1", "A2"] and first.has_more
    assert first.next_cursor == f"{A}=1.2"  # inside A's first segment
    second = reader.pull(first.next_cursor, 3)
    assert [c["key"] for c in second.changes] == ["A3", "A4", "B1"] and second.has_more
    assert second.next_cursor == f"{A}=2,{B}=1"
    # A new instance (the next cycle) resumes from the cursor alone.
    later = bucket_kit.link(node=C)
    third = later.pull(second.next_cursor, 10)
    assert [c["key"] for c in third.changes] == ["B2", "B3"] and not third.has_more
    assert third.next_cursor == f"{A}=2,{B}=2"
    assert later.pull(third.next_cursor, 10).changes == []

    a.push(batch(A, "A5"))
    fourth = later.pull(third.next_cursor, 10)
    assert [c["key"] for c in fourth.changes] == ["A5"] and fourth.next_cursor == f"{A}=3,{B}=2"
    assert reader.faults == [] and later.faults == []


def test_a_limit_that_ends_exactly_at_the_last_change_says_no_more(bucket_kit: BucketKit) -> None:
    bucket_kit.link(node=A).push(batch(A, "A1", "A2"))
    page = bucket_kit.link(node=C).pull("", 2)
    assert [c["key"] for c in page.changes] == ["A1", "A2"] and not page.has_more


def test_digest_reads_every_writer_without_values(bucket_kit: BucketKit) -> None:
    a = bucket_kit.link(node=A)
    a.push(batch(A, "A1"))
    bucket_kit.link(node=B).push(batch(B, "B1"))

    page = a.digest("", 10)
    assert sorted(c["key"] for c in page.changes) == ["A1", "B1"]
    assert all(set(c) == {"model", "key", "hlc", "deleted"} for c in page.changes)


def test_an_idle_pull_costs_the_same_whatever_the_bucket_holds(bucket_kit: BucketKit) -> None:
    a, b = bucket_kit.link(node=A), bucket_kit.link(node=B)
    reader = bucket_kit.link(node=C)
    costs: list[Counter[str]] = []
    cursor = ""
    for segments in (2, 40):
        while len(keys(bucket_kit, f"{ROOT}segments/{A}/")) < segments:
            a.push(batch(A, "A"))
            b.push(batch(B, "B"))
        _, cursor = read_all(reader, cursor)
        idle = bucket_kit.link(node=C)  # a new cycle: checks the manifest once
        seen = counting(idle)
        page = idle.pull(cursor, 500, with_log=True)
        assert page.changes == [] and not page.has_more and page.next_cursor == cursor
        again = Counter(seen)
        idle.pull(cursor, 500)
        costs.append(Counter({op: seen[op] - again[op] for op in seen}))
        costs[-1]["first"] = sum(again.values())

    assert costs[0] == costs[1]
    # The first idle pull of a cycle: the manifest and the log (2 GETs), the writers and each
    # writer after its last read segment (3 lists); later pages: the lists only.
    assert costs[0]["first"] == 5
    assert costs[0]["ListObjectsV2"] == 3 and costs[0]["GetObject"] == 0


# -- damage ----------------------------------------------------------------------------------


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flipped(data: bytes) -> bytes:
    at = data.index(b'"A2"') + 2
    return data[:at] + b"X" + data[at + 1 :]


def _wrong_checksum(data: bytes) -> bytes:
    document = json.loads(data)
    document["sha256"] = "0" * 64
    return json.dumps(document).encode()


def _another_group(data: bytes) -> bytes:
    document = json.loads(data)
    return seal(
        kind=SEGMENT, group="other", writer=A, seq=2, items=document["items"], secret=SECRET
    )


def _another_secret(data: bytes) -> bytes:
    document = json.loads(data)
    return seal(
        kind=SEGMENT, group="default", writer=A, seq=2, items=document["items"], secret="nope"
    )


def _unsigned(data: bytes) -> bytes:
    document = json.loads(data)
    return seal(kind=SEGMENT, group="default", writer=A, seq=2, items=document["items"], secret="")


def _moved(data: bytes) -> bytes:
    document = json.loads(data)  # a valid segment 2 of B, copied over A's segment 2
    return seal(kind=SEGMENT, group="default", writer=B, seq=2, items=document["items"], secret="")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncated, "not JSON"),
        (_flipped, "checksum mismatch"),
        (_wrong_checksum, "checksum mismatch"),
        (_another_group, "another replication group ('other')"),
        (_another_secret, "bad signature"),
        (_unsigned, "no signature"),
        (_moved, "does not match its key"),
    ],
)
def test_a_damaged_segment_is_refused_reported_and_delivered_once_repaired(
    bucket_kit: BucketKit, damage: Callable[[bytes], bytes], reason: str
) -> None:
    a, b = bucket_kit.link(node=A), bucket_kit.link(node=B)
    a.push(batch(A, "A1", value="sk-CANARY-bucket-damage"))
    a.push(batch(A, "A2", value="sk-CANARY-bucket-damage"))
    a.push(batch(A, "A3"))
    b.push(batch(B, "B1"))
    b.push(batch(B, "B2"))
    good = body(bucket_kit, segment_key(A, 2))
    upload(bucket_kit, segment_key(A, 2), damage(good))

    reader = bucket_kit.link(node=C)
    seen, cursor = read_all(reader, limit=2)
    assert seen == [f"{A}:A1", f"{B}:B1", f"{B}:B2"]  # nothing of A's stream from segment 2 on
    assert cursor == f"{A}=1,{B}=2"
    assert len(reader.faults) == 1
    assert segment_key(A, 2) in reader.faults[0] and reason in reader.faults[0]
    assert "sk-CANARY" not in reader.faults[0]

    retry = bucket_kit.link(node=C)
    assert retry.pull(cursor, 10).changes == [] and retry.faults == reader.faults

    upload(bucket_kit, segment_key(A, 2), good)
    repaired = bucket_kit.link(node=C)
    page = repaired.pull(cursor, 10)
    assert [c["key"] for c in page.changes] == ["A2", "A3"] and repaired.faults == []
    assert page.next_cursor == f"{A}=3,{B}=2"


def test_a_missing_segment_in_the_middle_stops_that_writer_only(bucket_kit: BucketKit) -> None:
    a = bucket_kit.link(node=A)
    for name in ("A1", "A2", "A3"):
        a.push(batch(A, name))
    bucket_kit.link(node=B).push(batch(B, "B1"))
    client = bucket_kit.server.client()
    client.delete_object(Bucket=bucket_kit.bucket, Key=segment_key(A, 2))
    client.close()

    reader = bucket_kit.link(node=C)
    seen, cursor = read_all(reader)
    assert seen == [f"{A}:A1", f"{B}:B1"] and cursor == f"{A}=1,{B}=1"
    assert reader.faults and segment_key(A, 2) in reader.faults[0]


def test_two_processes_of_one_node_never_overwrite_each_others_segment(
    bucket_kit: BucketKit,
) -> None:
    first, second = bucket_kit.link(node=A), bucket_kit.link(node=A)
    first.push(batch(A, "A1"))
    second.push(batch(A, "A2"))  # both now know the head is 2
    first.push(batch(A, "FROM_FIRST"))
    seen = counting(second)
    second.push(batch(A, "FROM_SECOND"))  # number 3 is taken: refused, then 4

    assert seen["PutObject"] == 2
    assert keys(bucket_kit, f"{ROOT}segments/{A}/") == [segment_key(A, n) for n in (1, 2, 3, 4)]
    assert read_all(bucket_kit.link(node=C))[0] == [
        f"{A}:A1",
        f"{A}:A2",
        f"{A}:FROM_FIRST",
        f"{A}:FROM_SECOND",
    ]


# -- snapshots and retention -----------------------------------------------------------------


def _history(link: BucketTransport, writer: str, segments: int) -> None:
    """``segments`` pushes that rewrite K0..K2 over and over, delete K1 at the end."""
    for n in range(1, segments + 1):
        changes = [remote_change(f"K{n % 3}", f"v{n}", node=writer)]
        if n == segments:
            changes.append(remote_change("K1", node=writer, deleted=True))
        link.push(changes)


def test_snapshots_compact_a_writers_stream_and_a_new_reader_starts_from_one(
    bucket_kit: BucketKit, settings: Any
) -> None:
    settings.CONFIGSYNC_BUCKET_SNAPSHOT_EVERY = 3
    settings.CONFIGSYNC_BUCKET_RETENTION_DAYS = 0
    a = bucket_kit.link(node=A)
    _history(a, A, 7)  # snapshots after segments 3 and 6; segment 7 after the last
    assert keys(bucket_kit, f"{ROOT}snapshots/") == [
        f"{ROOT}snapshots/{A}/000000000003.json",
        f"{ROOT}snapshots/{A}/000000000006.json",
    ]
    snapshot = json.loads(body(bucket_kit, f"{ROOT}snapshots/{A}/000000000006.json"))
    assert snapshot["kind"] == "snapshot" and snapshot["seq"] == 6
    # The latest change per record up to segment 6, in the order they were written.
    assert [(s, i, c["key"], c["data"]["value"]) for s, i, c in snapshot["items"]] == [
        (4, 0, "K1", "v4"),
        (5, 0, "K2", "v5"),
        (6, 0, "K0", "v6"),
    ]

    fresh = bucket_kit.link(node=C)
    seen = counting(fresh)
    page = fresh.pull("", 100)
    got = [(c["key"], c["deleted"], (c["data"] or {}).get("value")) for c in page.changes]
    assert got == [
        ("K1", False, "v4"),
        ("K2", False, "v5"),
        ("K0", False, "v6"),
        ("K1", False, "v7"),
        ("K1", True, None),
    ]
    assert page.next_cursor == f"{A}=7" and not page.has_more
    # The manifest, the snapshot and segment 7: never segments 1 to 6.
    assert seen["GetObject"] == 3 and fresh.faults == []


def test_a_snapshot_read_over_several_pages_ends_where_the_segments_begin(
    bucket_kit: BucketKit, settings: Any
) -> None:
    settings.CONFIGSYNC_BUCKET_SNAPSHOT_EVERY = 3
    a = bucket_kit.link(node=A)
    _history(a, A, 7)
    reader = bucket_kit.link(node=C)
    seen = counting(reader)

    first = reader.pull("", 2)
    assert [c["key"] for c in first.changes] == ["K1", "K2"] and first.has_more
    assert first.next_cursor == f"{A}=5.1"  # a stream position: up to segment 5, item 0
    rest, cursor = read_all(reader, first.next_cursor, limit=2)
    assert rest == [f"{A}:K0", f"{A}:K1", f"{A}:K1"] and cursor == f"{A}=7"
    assert seen["GetObject"] == 3  # the snapshot was downloaded once for all its pages


def test_a_damaged_snapshot_is_refused_and_the_other_writers_still_arrive(
    bucket_kit: BucketKit, settings: Any
) -> None:
    settings.CONFIGSYNC_BUCKET_SNAPSHOT_EVERY = 2
    _history(bucket_kit.link(node=A), A, 3)
    bucket_kit.link(node=B).push(batch(B, "B1"))
    key = f"{ROOT}snapshots/{A}/000000000002.json"
    good = body(bucket_kit, key)
    upload(bucket_kit, key, good.replace(b'"v2"', b'"v9"'))

    reader = bucket_kit.link(node=C)
    seen, cursor = read_all(reader)
    assert seen == [f"{B}:B1"] and cursor == f"{B}=1"  # a new reader starts from the snapshot
    assert reader.faults == [f"{key}: damaged snapshot, refused: checksum mismatch"]

    upload(bucket_kit, key, good)
    assert read_all(bucket_kit.link(node=C), cursor)[1] == f"{A}=3,{B}=1"


def test_retention_deletes_only_old_segments_a_snapshot_covers(
    bucket_kit: BucketKit, settings: Any
) -> None:
    settings.CONFIGSYNC_BUCKET_SNAPSHOT_EVERY = 3
    settings.CONFIGSYNC_BUCKET_RETENTION_DAYS = 1
    a = bucket_kit.link(node=A)
    _history(a, A, 4)  # a snapshot of 1..3, then segment 4
    reader = bucket_kit.link(node=C)
    early = reader.pull("", 2).next_cursor
    assert early == f"{A}=2.1"  # inside the snapshot of 1..3
    assert len(keys(bucket_kit, f"{ROOT}segments/{A}/")) == 4  # nothing is a day old yet

    later = bucket_kit.link(node=A, now=lambda: datetime.now(UTC) + timedelta(days=2))
    later.push(batch(A, "K9"))  # segment 5: not due for a snapshot; retention runs once

    assert keys(bucket_kit, f"{ROOT}segments/{A}/") == [segment_key(A, 4), segment_key(A, 5)]
    assert keys(bucket_kit, f"{ROOT}snapshots/") == [f"{ROOT}snapshots/{A}/000000000003.json"]
    assert later.faults == []
    # A reader away longer than the retention gets the snapshot (latest versions), then the rest.
    seen, cursor = read_all(bucket_kit.link(node=C), early)
    assert seen == [f"{A}:K0", f"{A}:K1", f"{A}:K1", f"{A}:K9"] and cursor == f"{A}=5"
    # A new reader too.
    assert read_all(bucket_kit.link(node=B), "")[1] == f"{A}=5"


def test_retention_keeps_the_head_segment_and_prunes_older_snapshots(
    bucket_kit: BucketKit, settings: Any
) -> None:
    settings.CONFIGSYNC_BUCKET_SNAPSHOT_EVERY = 2
    settings.CONFIGSYNC_BUCKET_RETENTION_DAYS = 1
    _history(bucket_kit.link(node=A), A, 4)  # snapshots 2 and 4
    reader = bucket_kit.link(node=C)
    _, cursor = read_all(reader)

    later = bucket_kit.link(node=A, now=lambda: datetime.now(UTC) + timedelta(days=2))
    later.push(batch(A, "K1", "K2"))  # segment 5, no snapshot due: 1..4 and snapshot 2 go

    assert keys(bucket_kit, f"{ROOT}segments/{A}/") == [segment_key(A, 5)]
    assert keys(bucket_kit, f"{ROOT}snapshots/") == [f"{ROOT}snapshots/{A}/000000000004.json"]
    # An up-to-date reader just reads on; an idle one stays idle.
    page = bucket_kit.link(node=C).pull(cursor, 10)
    assert [c["key"] for c in page.changes] == ["K1", "K2"] and page.next_cursor == f"{A}=5"
    assert bucket_kit.link(node=C).pull(page.next_cursor, 10).changes == []


# -- secrets and errors ----------------------------------------------------------------------


@pytest.mark.django_db
def test_only_ciphertext_of_a_sensitive_value_reaches_the_bucket(
    bucket_kit: BucketKit, settings: Any
) -> None:
    settings.CONFIGSYNC_BUCKET_SNAPSHOT_EVERY = 1  # the snapshot too
    canary = "sk-CANARY-bucket-9f3c2a7d"
    system_config_set(key="OPENAI_API_KEY", value=canary, is_sensitive=True)
    page = feed_page(node=LOCAL, cursor="", limit=10)
    assert page.changes

    link = bucket_kit.link(node=LOCAL)
    assert [r["status"] for r in link.push(page.changes).results] == ["applied"] * len(page.changes)

    stored = keys(bucket_kit)
    assert f"{ROOT}snapshots/{LOCAL}/000000000001.json" in stored
    bodies = b"".join(body(bucket_kit, key) for key in stored)
    assert canary.encode() not in bodies
    token = page.changes[0]["data"]["secret_value"]
    assert token.startswith("enc1:") and token.encode() in bodies
    assert [c["data"]["secret_value"] for c in bucket_kit.link(node=C).pull("", 10).changes] == [
        token
    ]


def test_an_unreachable_endpoint_is_a_transport_error(bucket_kit: BucketKit) -> None:
    down = bucket_kit.down(node=A)
    with pytest.raises(TransportError, match="unreachable"):
        down.pull("", 10)
    with pytest.raises(TransportError, match="unreachable"):
        down.push(batch(A, "K"))


def test_a_missing_bucket_is_a_transport_error(bucket_kit: BucketKit) -> None:
    link = BucketTransport(
        name="r2", node=A, bucket="cs-no-such-bucket", client=bucket_kit.server.client()
    )
    with pytest.raises(TransportError, match="no such bucket") as caught:
        link.log_get()
    assert "cs-no-such-bucket" in str(caught.value)
    link.client.close()


def test_wrong_credentials_from_the_settings_are_refused_without_the_secret(
    bucket_kit: BucketKit, settings: Any
) -> None:
    bucket_kit.server.settings(settings, bucket_kit.bucket)
    bucket_kit.link(node=A).push(batch(A, "K"))
    settings.CONFIGSYNC_R2_SECRET_ACCESS_KEY = WRONG_SECRET_KEY
    link = BucketTransport(name="r2", node=B)
    try:
        with pytest.raises(TransportError, match="credentials refused") as caught:
            link.pull("", 10)
    finally:
        link.close()
    message = str(caught.value)
    assert WRONG_SECRET_KEY not in message
    assert bucket_kit.server.secret_access_key not in message
    assert bucket_kit.server.access_key_id not in message


def test_a_transport_without_its_settings_names_the_missing_ones(settings: Any) -> None:
    settings.CONFIGSYNC_R2_ENDPOINT_URL = ""
    settings.CONFIGSYNC_R2_BUCKET = "cs-bucket"
    settings.CONFIGSYNC_R2_ACCESS_KEY_ID = "AKIA-not-real"
    settings.CONFIGSYNC_R2_SECRET_ACCESS_KEY = ""
    with pytest.raises(TransportError) as caught:
        BucketTransport(name="r2", node=A)
    assert "CONFIGSYNC_R2_ENDPOINT_URL" in str(caught.value)
    assert "CONFIGSYNC_R2_SECRET_ACCESS_KEY" in str(caught.value)
    assert "AKIA-not-real" not in str(caught.value)


# -- a real sync cycle -----------------------------------------------------------------------


@pytest.fixture
def r2_peer(bucket_kit: BucketKit, settings: Any, db: None) -> Peer:
    bucket_kit.server.settings(settings, bucket_kit.bucket)
    return Peer.objects.create(name="r2", transport=Peer.TransportKind.BUCKET)


def test_a_sync_cycle_applies_another_writers_change_and_stores_ours(
    bucket_kit: BucketKit, r2_peer: Peer
) -> None:
    other = bucket_kit.link(node=OTHER)
    other.push([remote_change("FROM_OTHER", "hello", node=OTHER)])
    system_config_set(key="FROM_LOCAL", value="hi")

    result = sync_cycle(peer_id=r2_peer.pk)

    assert result.ok and result.pulled == 1 and result.pushed == 1
    assert SystemConfig.objects.get(key="FROM_OTHER").value == "hello"
    r2_peer.refresh_from_db()
    assert r2_peer.node_id == "bucket.default"
    page = other.pull("", 10)
    assert [c["key"] for c in page.changes] == ["FROM_LOCAL"]  # not FROM_OTHER echoed back
    # The cycle's checkpoints are kept in the bucket's replication log.
    assert {e.direction for e in bucket_log(bucket_kit)} == {"pull", "push"}

    again = sync_cycle(peer_id=r2_peer.pk)
    assert again.ok and again.pulled == 0 and again.pushed == 0
    diff = sync_diff(peer_id=r2_peer.pk)
    assert diff.in_sync and diff.same == 2


def bucket_log(kit: BucketKit) -> list[Any]:
    return kit.link(node=LOCAL).log_get().entries


def test_a_concurrent_edit_through_the_bucket_is_a_conflict(
    bucket_kit: BucketKit, r2_peer: Peer
) -> None:
    system_config_set(key="SHARED", value="local")
    from configsync.replication.hlc import physical_now_ms
    from tests.support.replication import stamp

    later = stamp(OTHER, wall=physical_now_ms() + 1000)
    bucket_kit.link(node=OTHER).push([remote_change("SHARED", "other", node=OTHER, hlc=later)])

    result = sync_cycle(peer_id=r2_peer.pk)

    assert result.ok and result.conflicts == 1
    conflict = Conflict.objects.get()
    assert conflict.natural_key == "SHARED"
    assert SystemConfig.objects.get(key="SHARED").value == "other"  # the later write wins


def test_a_damaged_segment_fails_the_run_after_applying_the_rest(
    bucket_kit: BucketKit, r2_peer: Peer
) -> None:
    bucket_kit.link(node=A).push(batch(A, "A1"))
    bucket_kit.link(node=B).push(batch(B, "B1"))
    upload(bucket_kit, segment_key(A, 1), b'{"format":1,"kind":"segment"')

    with pytest.raises(SyncCycleError, match="damaged segment"):
        sync_cycle(peer_id=r2_peer.pk)

    assert SystemConfig.objects.filter(key="B1").exists()
    assert not SystemConfig.objects.filter(key="A1").exists()
    run = SyncRun.objects.get()
    assert not run.ok and segment_key(A, 1) in run.error


def test_a_full_page_downloads_nothing_of_the_writers_it_has_no_room_for(
    bucket_kit: BucketKit, settings: Any
) -> None:
    """A new node reading a group of many writers, each with a snapshot, downloads each
    snapshot once, not once per page for every writer after the page filled up."""
    settings.CONFIGSYNC_BUCKET_SNAPSHOT_EVERY = 1
    writers = [f"node-w{n}" for n in range(6)]
    for writer in writers:
        bucket_kit.link(node=writer).push(batch(writer, "X", "Y", "Z"))
    reader = bucket_kit.link(node=C)
    seen = counting(reader)

    got, cursor = read_all(reader, limit=2)

    assert sorted(got) == sorted(f"{w}:{k}" for w in writers for k in "XYZ")
    assert cursor == ",".join(f"{w}=1" for w in writers) and reader.faults == []
    assert seen["GetObject"] == 1 + len(writers)  # the manifest, then each snapshot once
