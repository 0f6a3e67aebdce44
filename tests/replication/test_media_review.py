"""Review of the shared media (external database, bucket) inside the sync cycle: defects found
in review, each proven here against a real PostgreSQL database and a real S3-compatible server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from configsync.models import Conflict, Peer, QuarantinedChange, SystemConfig
from configsync.replication.errors import TransportError
from configsync.replication.hlc import physical_now_ms
from configsync.replication.services.cycle import sync_cycle
from configsync.replication.services.diff import sync_diff
from configsync.replication.transports.base import Transport
from tests.support.kit_bucket import BucketKit, bucket_kit  # noqa: F401 - fixture
from tests.support.kit_database import DatabaseKit, database_kit  # noqa: F401 - fixture
from tests.support.replication import OTHER, REMOTE, remote_change, stamp

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Medium:
    """A shared medium, the peer that stands for it, and links to it as other nodes."""

    kind: str
    kit: Any
    peer: Peer

    def link(self, node: str) -> Transport:
        return self.kit.link(node=node)  # type: ignore[no-any-return]

    def damage_latest(self, writer: str) -> None:
        """Overwrite what ``writer`` stored last with garbage."""
        if self.kind == "database":
            import psycopg

            with psycopg.connect(self.kit.url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE configsync_ext_change SET change_json = 'garbage' WHERE writer = %s"
                    " AND seq = (SELECT MAX(seq) FROM configsync_ext_change WHERE writer = %s)",
                    (writer, writer),
                )
            return
        client = self.kit.server.client()
        prefix = f"configsync/default/segments/{writer}/"
        try:
            listed = client.list_objects_v2(Bucket=self.kit.bucket, Prefix=prefix)
            last = max(item["Key"] for item in listed["Contents"])
            client.put_object(Bucket=self.kit.bucket, Key=last, Body=b'{"format":1')
        finally:
            client.close()


@pytest.fixture(params=("database", "bucket"))
def medium(request: pytest.FixtureRequest, settings: Any) -> Iterator[Medium]:
    if request.param == "database":
        kit: Any = request.getfixturevalue("database_kit")
        peer = Peer.objects.create(name="external-db", transport=Peer.TransportKind.DATABASE)
    else:
        kit = request.getfixturevalue("bucket_kit")
        kit.server.settings(settings, kit.bucket)
        peer = Peer.objects.create(name="r2", transport=Peer.TransportKind.BUCKET)
    yield Medium(request.param, kit, peer)


def test_one_record_from_two_writers_in_one_page_is_applied_not_quarantined(
    medium: Medium,
) -> None:
    """Several writers (and a bucket writer's several segments) may each hold a version of one
    record; a page carries them together, and the apply refuses a batch naming a record twice:
    neither version may end up quarantined."""
    now = physical_now_ms()
    first = stamp(OTHER, wall=now - 2000)
    second = stamp(REMOTE, wall=now - 1000)
    medium.link(OTHER).push([remote_change("K", "first", node=OTHER, hlc=first)])
    # REMOTE saw OTHER's version, then edited: a successor, not a conflict.
    medium.link(REMOTE).push(
        [remote_change("K", "second", node=REMOTE, hlc=second, vv={OTHER: first, REMOTE: second})]
    )

    result = sync_cycle(peer_id=medium.peer.pk)

    assert result.ok and result.quarantined == 0, result
    assert not QuarantinedChange.objects.exists()
    assert SystemConfig.objects.get(key="K").value == "second"
    assert not Conflict.objects.exists()


def test_two_versions_of_one_writer_in_one_page_are_applied_not_quarantined(
    medium: Medium,
) -> None:
    now = physical_now_ms()
    writer = medium.link(OTHER)
    one = stamp(OTHER, wall=now - 2000)
    two = stamp(OTHER, wall=now - 1000)
    writer.push([remote_change("K", "one", node=OTHER, hlc=one)])
    writer.push([remote_change("K", "two", node=OTHER, hlc=two)])

    result = sync_cycle(peer_id=medium.peer.pk)

    assert result.ok and result.quarantined == 0, result
    assert SystemConfig.objects.get(key="K").value == "two"


def test_a_concurrent_edit_by_two_other_writers_is_a_conflict_on_a_third_node(
    medium: Medium,
) -> None:
    now = physical_now_ms()
    medium.link(OTHER).push(
        [remote_change("K", "other", node=OTHER, hlc=stamp(OTHER, wall=now - 2000))]
    )
    medium.link(REMOTE).push(
        [remote_change("K", "remote", node=REMOTE, hlc=stamp(REMOTE, wall=now - 1000))]
    )

    result = sync_cycle(peer_id=medium.peer.pk)

    assert result.ok and result.quarantined == 0 and result.conflicts == 1, result
    assert SystemConfig.objects.get(key="K").value == "remote"  # the later write wins
    conflict = Conflict.objects.get(natural_key="K")
    assert {conflict.local_version["origin"], conflict.remote_version["origin"]} == {OTHER, REMOTE}


def test_diff_does_not_call_a_medium_in_sync_when_part_of_it_could_not_be_read(
    medium: Medium,
) -> None:
    now = physical_now_ms()
    writer = medium.link(OTHER)
    writer.push([remote_change("K", "one", node=OTHER, hlc=stamp(OTHER, wall=now - 2000))])
    assert sync_cycle(peer_id=medium.peer.pk).ok
    writer.push([remote_change("K", "two", node=OTHER, hlc=stamp(OTHER, wall=now - 1000))])
    medium.damage_latest(OTHER)

    with pytest.raises(TransportError, match="damaged"):
        sync_diff(peer_id=medium.peer.pk)
