"""Scheduled snapshots in the bucket (the R2 modes), against a real S3-compatible server (moto's
standalone server, credentials checked): the task, retention, re-runs, listing, restoring one."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from configsync.models import SystemConfig
from configsync.services.system_config import system_config_set
from configsync.snapshots.bucket import (
    _Bucket,
    bucket_snapshot_scheduled,
    bucket_snapshot_write,
    bucket_snapshots_list,
    bucket_snapshots_prune,
)
from configsync.snapshots.document import SnapshotError, document_loads
from configsync.snapshots.services import snapshot_load
from configsync.tasks import beat_schedule, snapshot_to_bucket
from tests.support.cli import CliResult
from tests.support.kit_bucket import WRONG_SECRET_KEY, BucketServer

pytestmark = pytest.mark.django_db

Cli = Callable[..., CliResult]
NODE = "node-snap"


@pytest.fixture
def bucket(bucket_server: BucketServer, settings: Any) -> str:
    """A fresh bucket, this node in ``LOCAL_R2`` mode pointing at it."""
    name = bucket_server.create_bucket()
    bucket_server.settings(settings, name)
    settings.CONFIGSYNC_NODE_ID = NODE
    settings.CONFIGSYNC_GROUP_ID = "grp"
    settings.CONFIGSYNC_R2_PREFIX = "cs"
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_R2"
    settings.CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS = 3600
    settings.CONFIGSYNC_SNAPSHOT_KEEP = 2
    return name


def keys(server: BucketServer, bucket: str) -> list[str]:
    client = server.client()
    try:
        answer = client.list_objects_v2(Bucket=bucket)
    finally:
        client.close()
    return sorted(item["Key"] for item in answer.get("Contents", ()))


def test_the_task_writes_a_snapshot_under_the_nodes_backups_folder(
    bucket: str,
    bucket_server: BucketServer,
    canary: str,
) -> None:
    system_config_set(key="DB_PASSWORD", value=canary, is_sensitive=True)

    assert snapshot_to_bucket.apply().result is True

    (key,) = keys(bucket_server, bucket)
    assert key.startswith(f"cs/grp/backups/{NODE}/") and key.endswith("Z.json")
    client = bucket_server.client()
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.close()
    assert canary.encode() not in body
    document = document_loads(body)
    assert document["node_id"] == NODE and document["group_id"] == "grp"


def test_a_rerun_in_the_same_interval_rewrites_one_object_and_retention_keeps_the_newest(
    bucket: str,
    bucket_server: BucketServer,
) -> None:
    start = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    bucket_snapshot_scheduled(now=start)
    bucket_snapshot_scheduled(now=start + timedelta(minutes=20))  # same interval: same object
    assert len(keys(bucket_server, bucket)) == 1

    bucket_snapshot_scheduled(now=start + timedelta(hours=1))
    bucket_snapshot_scheduled(now=start + timedelta(hours=2))

    names = [b.name for b in bucket_snapshots_list()]
    assert names == ["20260101T110000Z.json", "20260101T120000Z.json"]  # SNAPSHOT_KEEP = 2


def test_nothing_is_written_outside_the_r2_modes(
    bucket: str,
    bucket_server: BucketServer,
    settings: Any,
) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_ONLY"

    assert snapshot_to_bucket.apply().result is False
    assert keys(bucket_server, bucket) == []


def test_the_beat_schedules_it_only_when_enabled(bucket: str, settings: Any) -> None:
    entry = beat_schedule()["configsync-snapshot-to-bucket"]
    assert entry["task"] == "configsync.tasks.snapshot_to_bucket"
    assert entry["schedule"] == timedelta(seconds=3600)

    settings.CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS = 0
    assert "configsync-snapshot-to-bucket" not in beat_schedule()


def test_list_and_restore_one_from_the_bucket(bucket: str, cli: Cli) -> None:
    system_config_set(key="SITE_NAME", value="backed-up")
    assert cli("snapshot", "--to-bucket").code == 0
    system_config_set(key="SITE_NAME", value="broken")

    listed = json.loads(cli("snapshot", "--list-bucket", "--json").out)
    assert len(listed) == 1 and listed[0]["node"] == NODE
    source = listed[0]["source"]
    dry = cli("restore", source, "--dry-run")
    assert dry.code == 0, dry.err
    assert 'value: "broken" -> "backed-up"' in dry.out
    assert SystemConfig.objects.get(key="SITE_NAME").value == "broken"

    result = cli("restore", "bucket:" + listed[0]["name"])  # this node's, by file name alone

    assert result.code == 0, result.err
    assert SystemConfig.objects.get(key="SITE_NAME").value == "backed-up"


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "x/20260101T000000Z.json/..", "latest", "20260101T000000Z.json.gz"],
    ids=["traversal", "trailing", "word", "suffix"],
)
def test_a_bad_bucket_name_is_refused(name: str, bucket: str) -> None:
    with pytest.raises(SnapshotError, match=r"bucket:<YYYYMMDDTHHMMSSZ>\.json"):
        snapshot_load(source=f"bucket:{name}")


def test_a_missing_snapshot_is_a_clear_error(bucket: str) -> None:
    with pytest.raises(SnapshotError, match="no such snapshot"):
        snapshot_load(source="bucket:20000101T000000Z.json")


def test_refused_credentials_are_named_without_the_key(bucket: str, settings: Any) -> None:
    settings.CONFIGSYNC_R2_SECRET_ACCESS_KEY = WRONG_SECRET_KEY

    with pytest.raises(SnapshotError) as caught:
        bucket_snapshot_write()
    assert bucket in str(caught.value) and "refused" in str(caught.value)
    assert WRONG_SECRET_KEY not in str(caught.value)


def test_a_failing_bucket_is_retried_then_logged_without_the_key(
    bucket: str, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CONFIGSYNC_R2_SECRET_ACCESS_KEY = WRONG_SECRET_KEY

    with caplog.at_level("WARNING", logger="configsync.tasks"):
        snapshot_to_bucket.apply()

    retries = [r for r in caplog.records if "retry in" in r.getMessage()]
    gave_up = [r for r in caplog.records if "until the next beat" in r.getMessage()]
    assert len(retries) == 5 and len(gave_up) == 1
    assert WRONG_SECRET_KEY not in caplog.text


def test_old_snapshots_the_store_refuses_to_delete_are_reported_not_counted(
    bucket: str, bucket_server: BucketServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DeleteObjects`` answers 200 with per-object errors: a refused deletion is an error
    (the task logs it and retries), not a deletion."""
    start = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    for hours in range(2):  # SNAPSHOT_KEEP = 2: both kept
        bucket_snapshot_scheduled(now=start + timedelta(hours=hours))
    real_call = _Bucket.call

    def refusing(self: _Bucket, operation: str, **params: Any) -> Any:
        if operation == "delete_objects":  # the store keeps them and says so
            objects = params["Delete"]["Objects"]
            return {"Errors": [{"Key": o["Key"], "Code": "AccessDenied"} for o in objects]}
        return real_call(self, operation, **params)

    monkeypatch.setattr(_Bucket, "call", refusing)
    with pytest.raises(SnapshotError, match="1 of 1 old snapshots were not deleted"):
        bucket_snapshots_prune(keep=1)
    assert len(keys(bucket_server, bucket)) == 2
