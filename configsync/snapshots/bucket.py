"""Snapshots kept in the replication bucket (the R2 modes): write, list, read, prune.

Objects live under ``<R2_PREFIX>/<GROUP_ID>/backups/<node>/<YYYYMMDDTHHMMSSZ>.json`` (beside the
transport's own ``segments/`` and ``snapshots/``, which the transport never lists outside its
folders), each one snapshot document (``configsync.snapshots``) as a restore reads it. A node
writes and prunes only its own folder, keeping its newest ``CONFIGSYNC_SNAPSHOT_KEEP``.

The scheduled write (:func:`bucket_snapshot_scheduled`, the beat's task) names its object after
the start of the current interval (``CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS``), so a task run twice
in one interval (a retry, a second beat) rewrites the same object instead of adding one: safe to
re-run. A write by hand (``configsync snapshot --to-bucket``) is named after the second it ran.

The S3 client is the bucket transport's (``transports.bucket.bucket_client``: endpoint, keys,
region and timeouts from ``CONFIGSYNC_R2_*``). Every failure is a ``SnapshotError`` naming the
bucket and the endpoint's host, never a credential.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from configsync.conf import app_settings
from configsync.replication.selectors.mode import deployment_mode
from configsync.replication.transports.bucket import bucket_client
from configsync.selectors.node import node_id
from configsync.snapshots.document import (
    MAX_SNAPSHOT_BYTES,
    SnapshotError,
    document_dumps,
)
from configsync.snapshots.selectors import snapshot_document

R2_MODES = ("LOCAL_R2", "LOCAL_EXTERNAL_R2")
"""The deployment modes in which scheduled snapshots go to the bucket."""
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"(?:(?P<node>[A-Za-z0-9_.\-]{1,64})/)?(?P<file>\d{8}T\d{6}Z\.json)")


@dataclass(frozen=True)
class BucketBackup:
    """One snapshot object: the node that wrote it, its file name, size and time."""

    node: str
    name: str
    key: str
    size: int
    modified: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "name": self.name,
            "source": f"bucket:{self.node}/{self.name}",
            "size": self.size,
            "modified": self.modified,
        }


class _Bucket:
    """A client for the configured bucket and the keys of this group's backups."""

    def __init__(self) -> None:
        if not app_settings.bucket_configured:
            raise SnapshotError(
                "the bucket is not configured: set CONFIGSYNC_R2_ENDPOINT_URL, "
                "CONFIGSYNC_R2_BUCKET, CONFIGSYNC_R2_ACCESS_KEY_ID and "
                "CONFIGSYNC_R2_SECRET_ACCESS_KEY"
            )
        self.bucket = str(app_settings.R2_BUCKET)
        try:
            parts = urlsplit(str(app_settings.R2_ENDPOINT_URL))
            self.host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        except ValueError:
            self.host = "?"
        try:
            self.client = bucket_client(
                endpoint_url=str(app_settings.R2_ENDPOINT_URL),
                access_key_id=str(app_settings.R2_ACCESS_KEY_ID),
                secret_access_key=str(app_settings.R2_SECRET_ACCESS_KEY),
                region=str(app_settings.R2_REGION or "auto"),
                timeout=float(app_settings.PEER_TIMEOUT_SECONDS),
            )
        except Exception as exc:
            raise SnapshotError(f"bucket {self.bucket}: {exc}") from None
        prefix = str(app_settings.R2_PREFIX or "").strip("/")
        group = str(app_settings.GROUP_ID)
        self.root = f"{prefix}/{group}/backups/" if prefix else f"{group}/backups/"

    def folder(self, node: str) -> str:
        return f"{self.root}{node}/"

    def call(self, operation: str, **params: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except ClientError as exc:
            code = re.sub(r"[^A-Za-z0-9.]", "", str((exc.response.get("Error") or {}).get("Code")))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise SnapshotError(f"bucket {self.bucket}: no such snapshot") from None
            raise SnapshotError(
                f"bucket {self.bucket} at {self.host}: request refused ({code[:64]})"
            ) from None
        except BotoCoreError as exc:
            raise SnapshotError(
                f"bucket {self.bucket} at {self.host}: {type(exc).__name__}"
            ) from None

    def backups(self, node: str) -> list[BucketBackup]:
        found: list[BucketBackup] = []
        token: str | None = None
        folder = self.folder(node)
        while True:
            params: dict[str, Any] = {"Prefix": folder}
            if token:
                params["ContinuationToken"] = token
            answer = self.call("list_objects_v2", **params)
            for item in answer.get("Contents", ()):
                name = str(item["Key"])[len(folder) :]
                if _NAME.fullmatch(name):
                    modified = item.get("LastModified")
                    found.append(
                        BucketBackup(
                            node=node,
                            name=name,
                            key=str(item["Key"]),
                            size=int(item.get("Size", 0)),
                            modified=modified.isoformat() if modified else "",
                        )
                    )
            if not answer.get("IsTruncated"):
                break
            token = answer.get("NextContinuationToken")
        return sorted(found, key=lambda b: b.name)

    def close(self) -> None:
        self.client.close()


def bucket_snapshot_write(*, now: datetime | None = None) -> BucketBackup:
    """Write this node's snapshot to the bucket, named after ``now`` (UTC, default: now)."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    node = node_id()
    body = document_dumps(snapshot_document())
    store = _Bucket()
    try:
        name = when.strftime(NAME_FORMAT) + ".json"
        key = store.folder(node) + name
        store.call("put_object", Key=key, Body=body, ContentType="application/json")
    finally:
        store.close()
    return BucketBackup(node=node, name=name, key=key, size=len(body), modified=when.isoformat())


def bucket_snapshots_list(*, node: str | None = None) -> list[BucketBackup]:
    """The snapshots of ``node`` (default: this node) in the bucket, oldest first."""
    store = _Bucket()
    try:
        return store.backups(node or node_id())
    finally:
        store.close()


def bucket_snapshot_read(*, name: str) -> bytes:
    """The bytes of ``<name>`` (this node's) or ``<node>/<name>`` (``NAME_FORMAT`` names)."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise SnapshotError(
            "a bucket snapshot is named bucket:<YYYYMMDDTHHMMSSZ>.json or "
            "bucket:<node>/<YYYYMMDDTHHMMSSZ>.json (see `configsync snapshot --list-bucket`)"
        )
    store = _Bucket()
    try:
        key = store.folder(match.group("node") or node_id()) + match.group("file")
        answer = store.call("get_object", Key=key)
        if int(answer.get("ContentLength") or 0) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(f"the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")
        data = bytes(answer["Body"].read(MAX_SNAPSHOT_BYTES + 1))
    finally:
        store.close()
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")
    return data


def bucket_snapshots_prune(*, keep: int | None = None) -> list[str]:
    """Delete this node's snapshots but the newest ``keep`` (default ``SNAPSHOT_KEEP``); the
    names deleted. ``SnapshotError`` naming how many were not when the store refuses some (a
    ``DeleteObjects`` answer lists per-object errors with a 200); the next run tries again."""
    keep = max(1, int(app_settings.SNAPSHOT_KEEP if keep is None else keep))
    store = _Bucket()
    try:
        doomed = store.backups(node_id())[:-keep]
        refused = 0
        for start in range(0, len(doomed), 1000):
            batch = doomed[start : start + 1000]
            answer = store.call(
                "delete_objects",
                Delete={"Objects": [{"Key": b.key} for b in batch], "Quiet": True},
            )
            refused += len((answer or {}).get("Errors") or [])
        if refused:
            raise SnapshotError(
                f"bucket {store.bucket}: {refused} of {len(doomed)} old snapshots were not deleted"
            )
    finally:
        store.close()
    return [b.name for b in doomed]


def bucket_snapshot_due() -> str | None:
    """Why a scheduled snapshot is not written now (``None``: it is): the interval is 0, the
    mode is not an R2 mode (read now: a mode switch needs no restart), or no bucket."""
    if int(app_settings.SNAPSHOT_INTERVAL_SECONDS or 0) <= 0:
        return "CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS is 0"
    mode = deployment_mode()
    if mode not in R2_MODES:
        return f"the deployment mode {mode} keeps no snapshots in a bucket"
    if not app_settings.bucket_configured:
        return "the bucket is not configured (CONFIGSYNC_R2_*)"
    return None


def bucket_snapshot_scheduled(*, now: datetime | None = None) -> BucketBackup | None:
    """The beat's snapshot: written under the start of the current interval (so re-running it
    in the same interval rewrites one object), then retention; ``None`` when not due."""
    if bucket_snapshot_due() is not None:
        return None
    interval = int(app_settings.SNAPSHOT_INTERVAL_SECONDS)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    slot = datetime.fromtimestamp(int(moment.timestamp()) // interval * interval, UTC)
    backup = bucket_snapshot_write(now=slot)
    bucket_snapshots_prune()
    return backup
