"""``BucketTransport``: the replication group's changes in an S3-compatible bucket (boto3).

The layout, formats, costs and failure behaviour are described in the package's docstring
(``configsync.replication.transports.bucket``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from configsync.conf import app_settings
from configsync.replication.errors import TransportError
from configsync.replication.page import FeedPage, LogEntry
from configsync.replication.transports.base import PushResult, ReplicationLogAnswer, Transport
from configsync.replication.transports.bucket.documents import (
    FORMAT,
    MAX_SEQ,
    NAME,
    SEGMENT,
    SNAPSHOT,
    Damaged,
    Entry,
    Layout,
    Position,
    canonical,
    compaction_key,
    seal,
    segment_changes,
    seq_of,
    snapshot_entries,
    unseal,
)
from configsync.replication.transports.vector import (
    MAX_CURSOR_LENGTH,
    vector_decode,
    vector_encode,
)

logger = logging.getLogger(__name__)

APPLIED = "applied"
DIGEST_FIELDS = ("model", "key", "hlc", "deleted")
"""What a digest item carries (as the HTTP peer's digest does)."""
PUT_ATTEMPTS = 5
"""Segment numbers tried before a push gives up on a writer that keeps racing this one."""
CACHE_SIZE = 4
"""Verified documents (immutable: their keys are never rewritten) a transport keeps while it is
open, so a snapshot or a segment split over several pages is downloaded once per cycle."""
DELETE_BATCH = 1000
_NODE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_GROUP = re.compile(r"[A-Za-z0-9_\-]{1,57}")
"""A group id whose medium id ``bucket.<group>`` is a node id (at most 64 characters)."""
_CODE = re.compile(r"[^A-Za-z0-9.]")
_CREDENTIAL_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "Unauthorized",
}
_session: Any = None
"""One boto3 session per process for making clients (it caches the loaded service models: a
client then costs milliseconds, not a tenth of a second). Every client gets the endpoint,
region and credentials explicitly: none comes from the environment's AWS configuration."""
_session_lock = threading.Lock()
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


def bucket_client(
    *,
    endpoint_url: str,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    timeout: float,
) -> Any:
    """A boto3 S3 client for an S3-compatible endpoint: path-style addressing (MinIO, R2),
    checksums only where S3 requires them (not every compatible server takes the newer
    defaults), short timeouts and two attempts (a cycle retries, not the client).

    ``TransportError`` when the endpoint is not a URL (the message does not quote it)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    global _session
    try:
        with _session_lock:  # a session is not thread-safe; its clients are
            if _session is None:
                _session = boto3.session.Session()
            return _session.client(
                "s3",
                endpoint_url=endpoint_url,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                region_name=region or "auto",
                config=config,
            )
    except ValueError:
        raise TransportError("CONFIGSYNC_R2_ENDPOINT_URL is not a valid URL") from None


def _host(endpoint_url: str | None) -> str:
    """``host[:port]`` of an endpoint, without any credentials or path."""
    try:
        parts = urlsplit(endpoint_url or "")
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


_UNSUPPORTED = object()
"""What ``_call`` answers for a conditional request the server does not implement."""


class _Gone(Exception):
    """A listed object was deleted before it could be read (a writer pruning meanwhile)."""


@dataclass(frozen=True)
class _Stored:
    """A listed object: its sequence number, key and when it was written."""

    seq: int
    key: str
    modified: datetime | None


class BucketTransport(Transport):
    """The group's changes in a bucket: this node writes its own segments, reads the others'."""

    max_cursor_length = MAX_CURSOR_LENGTH

    def __init__(
        self,
        *,
        name: str,
        node: str,
        client: Any | None = None,
        bucket: str | None = None,
        prefix: str | None = None,
        group: str | None = None,
        secret: str | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """``client``: a boto3 S3 client to use (and not close); without one, a client is made
        from ``CONFIGSYNC_R2_*``. ``bucket``, ``prefix``, ``group``, ``secret`` default to
        ``R2_BUCKET``, ``R2_PREFIX``, ``GROUP_ID`` and ``SYNC_SECRET``; ``now`` (UTC) is the
        clock retention ages objects by. ``TransportError`` when the settings are incomplete."""
        super().__init__()
        self.name = name
        self.node = node
        self.group = str(app_settings.GROUP_ID if group is None else group)
        self.bucket = str(app_settings.R2_BUCKET if bucket is None else bucket)
        self.secret = str(app_settings.SYNC_SECRET if secret is None else secret)
        self.snapshot_every = int(app_settings.BUCKET_SNAPSHOT_EVERY or 0)
        self.retention_days = float(app_settings.BUCKET_RETENTION_DAYS or 0)
        self.medium = f"bucket.{self.group}"
        self.layout = Layout(
            prefix=str(app_settings.R2_PREFIX if prefix is None else prefix), group=self.group
        )
        self._now = now or (lambda: datetime.now(UTC))
        endpoint = client.meta.endpoint_url if client is not None else app_settings.R2_ENDPOINT_URL
        self.host = _host(endpoint)
        if not _GROUP.fullmatch(self.group):
            raise TransportError(
                f"{self.name}: CONFIGSYNC_GROUP_ID must be letters, digits, '-' or '_' "
                "(at most 57) to name a bucket medium"
            )
        if not _NODE_ID.fullmatch(node) or not NAME.fullmatch(node):
            raise TransportError(f"{self.name}: this node's id cannot name a writer in a bucket")
        self._owns_client = client is None
        if client is None:
            names = ("R2_ENDPOINT_URL", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")
            missing = [f"CONFIGSYNC_{n}" for n in names if not getattr(app_settings, n)]
            if missing:
                raise TransportError(
                    f"{self.name}: the bucket transport is not configured: set "
                    + ", ".join(missing)
                )
            client = bucket_client(
                endpoint_url=str(app_settings.R2_ENDPOINT_URL),
                access_key_id=str(app_settings.R2_ACCESS_KEY_ID),
                secret_access_key=str(app_settings.R2_SECRET_ACCESS_KEY),
                region=str(app_settings.R2_REGION or "auto"),
                timeout=float(app_settings.PEER_TIMEOUT_SECONDS),
            )
        elif not self.bucket:
            raise TransportError(f"{self.name}: no bucket named (CONFIGSYNC_R2_BUCKET)")
        self.client = client
        self._group_checked = False
        self._head: int | None = None
        """This node's last segment number (``None``: not looked up yet by this instance)."""
        self._own_snapshots: list[_Stored] = []
        self._pruned = False
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._conditional = True
        self._damaged: dict[str, str] = {}
        """Keys found damaged by this instance and why: not downloaded again by its later pages
        (a repaired one is read by the next instance, i.e. the next cycle)."""
        self._in_snapshot: dict[str, tuple[int, Position]] = {}
        """Per writer, the snapshot a page of this instance stopped inside, and where: the next
        page goes on in it (from its segments, a stream position is correct too, but may read
        versions the snapshot already compacted)."""

    # -- the interface ------------------------------------------------------------------------

    def describe(self) -> str:
        return f"{self.name} (bucket {self.bucket} at {self.host})"

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def pull(
        self, cursor: str, limit: int, *, echoes: bool = False, with_log: bool = False
    ) -> FeedPage:
        return self._page(cursor, limit, echoes=echoes, digest=False, with_log=with_log)

    def digest(self, cursor: str, limit: int) -> FeedPage:
        return self._page(cursor, limit, echoes=True, digest=True, with_log=False)

    def push(self, changes: list[dict[str, Any]]) -> PushResult:
        """Store ``changes`` as this node's next segment (all or nothing: one object), then
        write a snapshot when one is due and prune once per instance; answers ``applied`` per
        item (the readers decide). A failure of the upkeep after the segment is stored is a
        fault, not an error: the batch is in the bucket."""
        if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
            raise TransportError(f"{self._where()}: not a batch of changes")
        if not changes:
            return PushResult(node=self.medium, results=[])
        self._ensure_group()
        seq = self._own_head() + 1
        for _ in range(PUT_ATTEMPTS):
            if seq > MAX_SEQ:
                raise TransportError(f"{self._where()}: this node's segment numbers are used up")
            try:
                body = seal(
                    kind=SEGMENT,
                    group=self.group,
                    writer=self.node,
                    seq=seq,
                    items=changes,
                    secret=self.secret,
                )
            except (TypeError, ValueError):
                raise TransportError(f"{self._where()}: a change is not JSON") from None
            if self._put(self.layout.segment(self.node, seq), body, exclusive=True):
                break
            # Another process writing as this node took the number: find the new head.
            seq = self._last_seq(self.node, after=seq - 1, default=seq) + 1
        else:
            raise TransportError(
                f"{self._where()}: another process keeps writing segments as this node"
            )
        self._head = seq
        self._upkeep()
        return PushResult(node=self.medium, results=[{"status": APPLIED} for _ in changes])

    def log_get(self) -> ReplicationLogAnswer:
        self._ensure_group()
        return ReplicationLogAnswer(node=self.medium, entries=self._log_entries())

    def log_record(self, *, direction: str, session: str, cursor: str) -> None:
        self._ensure_group()
        entries = [e for e in self._log_entries() if e.direction != direction]
        entries.append(LogEntry(direction=direction, session=session, cursor=cursor))
        document = {
            "format": FORMAT,
            "kind": "log",
            "group": self.group,
            "node": self.node,
            "entries": [
                {"direction": e.direction, "session": e.session, "cursor": e.cursor}
                for e in sorted(entries, key=lambda e: e.direction)
            ],
        }
        self._put(self.layout.log(self.node), canonical(document), exclusive=False)

    # -- reading ------------------------------------------------------------------------------

    def _page(
        self, cursor: str, limit: int, *, echoes: bool, digest: bool, with_log: bool
    ) -> FeedPage:
        self._ensure_group()
        vector = vector_decode(cursor)
        room = max(1, int(limit))
        changes: list[dict[str, Any]] = []
        more = False
        for writer in self._writers():
            if writer == self.node and not echoes:
                continue
            before = Position.parse(vector[writer]) if writer in vector else Position()
            if len(changes) >= room:
                # The page is full: only whether this writer has more (one list request), never
                # its snapshot or segments, which the next page downloads.
                if self._segments_after(writer, before.seq - 1)[0]:
                    more = True
                    break
                continue
            got, after, writer_more = self._read_writer(writer, before, room - len(changes))
            changes.extend(got)
            more = more or writer_more
            if after != before:
                vector[writer] = after.text()
        if digest:
            changes = [{k: c.get(k) for k in DIGEST_FIELDS} for c in changes]
        return FeedPage(
            node=self.medium,
            changes=changes,
            next_cursor=vector_encode(vector),
            has_more=more,
            log=self._log_entries() if with_log else None,
        )

    def _writers(self) -> list[str]:
        """Every writer with a folder under ``segments/`` (one list request per 1,000)."""
        writers: list[str] = []
        folder = self.layout.segments
        token: str | None = None
        while True:
            answer = self._list(folder, delimiter="/", token=token)
            for common in answer.get("CommonPrefixes") or []:
                name = str(common.get("Prefix", ""))[len(folder) : -1]
                if _NODE_ID.fullmatch(name) and NAME.fullmatch(name):
                    writers.append(name)
                else:
                    self._fault(f"{folder}: a folder that is not a node id ({len(name)} chars)")
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return sorted(writers)

    def _read_writer(
        self, writer: str, position: Position, room: int
    ) -> tuple[list[dict[str, Any]], Position, bool]:
        """``writer``'s changes from ``position``, at most ``room``: the changes, the position
        after them, and whether more are waiting. A damaged or missing segment stops this
        writer's stream before it (a fault says why); nothing after it is read."""
        listed, truncated = self._segments_after(writer, position.seq - 1)
        items: list[dict[str, Any]] = []
        gap = bool(listed) and listed[0].seq > position.seq
        resume = self._in_snapshot.pop(writer, None)
        if position.fresh or gap or (resume is not None and resume[1] == position):
            if resume is not None and resume[1] == position:
                latest = resume[0]  # this instance's previous page stopped inside it
            else:
                snapshots = self._snapshots(writer)
                latest = snapshots[-1].seq if snapshots else 0
            if latest >= position.seq and (not listed or listed[0].seq <= latest + 1):
                entries = self._snapshot(writer, latest)
                if entries is None:
                    return [], position, False
                pending = [e for e in entries if e.origin >= position]
                read = pending[: max(room, 0)]
                items = [e.change for e in read]
                if len(read) < len(pending):
                    if read:
                        position = Position(read[-1].seq, read[-1].index + 1)
                    self._in_snapshot[writer] = (latest, position)
                    return items, position, True
                position = Position(latest + 1, 0)
                room -= len(read)
                listed = [s for s in listed if s.seq >= position.seq]
                if truncated and not listed:
                    return items, position, True  # the listing ended inside the snapshot
            elif gap:
                self._fault(
                    f"{self.layout.segments_of(writer)}: segments {position.seq} to "
                    f"{listed[0].seq - 1} are missing and no snapshot covers them"
                )
                return [], position, False
        for stored in listed:
            if stored.seq != position.seq:
                self._fault(f"{self.layout.segment(writer, position.seq)}: missing")
                return items, position, False
            if room <= 0:
                return items, position, True
            try:
                changes = self._segment(writer, stored.seq)
            except _Gone:
                # Pruned since it was listed: the next page (or cycle) reads the snapshot.
                return items, position, bool(items)
            if changes is None:
                return items, position, False
            part = changes[position.offset :]
            taken = part[:room]
            items.extend(taken)
            room -= len(taken)
            if len(taken) < len(part):
                return items, Position(stored.seq, position.offset + len(taken)), True
            position = Position(stored.seq + 1, 0)
        return items, position, truncated

    def _segment(self, writer: str, seq: int) -> list[dict[str, Any]] | None:
        """The changes of a segment, verified; ``None`` when it is damaged (a fault says why);
        :class:`_Gone` when it no longer exists."""
        key = self.layout.segment(writer, seq)
        if key in self._cache:
            return list(self._cache[key])
        if key in self._damaged:
            self._fault(self._damaged[key])
            return None
        body = self._get(key)
        if body is None:
            raise _Gone
        try:
            items = unseal(
                body, kind=SEGMENT, group=self.group, writer=writer, seq=seq, secret=self.secret
            )
            changes = segment_changes(items)
        except Damaged as exc:
            self._damaged[key] = f"{key}: damaged segment, refused: {exc.reason}"
            self._fault(self._damaged[key])
            return None
        self._remember(key, changes)
        return list(changes)

    def _snapshot(self, writer: str, seq: int) -> list[Entry] | None:
        """The entries of a snapshot, verified; ``None`` when it is damaged or gone."""
        key = self.layout.snapshot(writer, seq)
        if key in self._cache:
            return list(self._cache[key])
        if key in self._damaged:
            self._fault(self._damaged[key])
            return None
        body = self._get(key)
        if body is None:
            self._fault(f"{key}: snapshot vanished while listed")
            return None
        try:
            items = unseal(
                body, kind=SNAPSHOT, group=self.group, writer=writer, seq=seq, secret=self.secret
            )
            entries = snapshot_entries(items, upto=seq)
        except Damaged as exc:
            self._damaged[key] = f"{key}: damaged snapshot, refused: {exc.reason}"
            self._fault(self._damaged[key])
            return None
        self._remember(key, entries)
        return list(entries)

    def _remember(self, key: str, value: Any) -> None:
        self._cache[key] = value
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _segments_after(self, writer: str, seq: int) -> tuple[list[_Stored], bool]:
        """``writer``'s segments after ``seq`` (one list request: up to 1,000) and whether
        the listing stopped short."""
        folder = self.layout.segments_of(writer)
        answer = self._list(folder, start_after=self.layout.after(writer, seq))
        return self._stored(folder, answer), bool(answer.get("IsTruncated"))

    def _snapshots(self, writer: str) -> list[_Stored]:
        """``writer``'s snapshots, oldest first (few: older ones are pruned with retention)."""
        folder = self.layout.snapshots_of(writer)
        found: list[_Stored] = []
        token: str | None = None
        while True:
            answer = self._list(folder, token=token)
            found.extend(self._stored(folder, answer))
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return sorted(found, key=lambda s: s.seq)

    def _stored(self, folder: str, answer: dict[str, Any]) -> list[_Stored]:
        found: list[_Stored] = []
        for item in answer.get("Contents") or []:
            key = str(item.get("Key", ""))
            seq = seq_of(key, folder)
            if seq is None or seq < 1:
                self._fault(f"{folder}: an object that is not <seq>.json ({len(key)} chars)")
                continue
            modified = item.get("LastModified")
            found.append(_Stored(seq, key, modified if isinstance(modified, datetime) else None))
        return found

    def _log_entries(self) -> list[LogEntry]:
        """This node's replication log as the bucket keeps it. A damaged log reads as empty:
        the sessions then differ and the directions start over (safe: one full cycle)."""
        body = self._get(self.layout.log(self.node))
        if body is None:
            return []
        try:
            document = json.loads(body)
            raw = document["entries"] if document.get("group") == self.group else []
            entries = [
                LogEntry(direction=e["direction"], session=e["session"], cursor=e["cursor"])
                for e in raw
            ]
            texts = [v for e in entries for v in (e.direction, e.session, e.cursor)]
            if document.get("group") == self.group and all(isinstance(v, str) for v in texts):
                return entries
        except (ValueError, RecursionError, TypeError, KeyError, AttributeError):
            pass
        logger.warning("%s: this node's replication log in the bucket is damaged", self._where())
        return []

    # -- writing ------------------------------------------------------------------------------

    def _ensure_group(self) -> None:
        """Check (once per instance) that the prefix holds this group, creating its manifest on
        first use; ``TransportError`` when it names another group or is not a manifest."""
        if self._group_checked:
            return
        key = self.layout.manifest
        body = self._get(key)
        if body is None:
            manifest = canonical({"format": FORMAT, "kind": "group", "group": self.group})
            if self._put(key, manifest, exclusive=True):
                self._group_checked = True
                return
            body = self._get(key) or b""
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if not isinstance(document, dict) or document.get("kind") != "group":
            raise TransportError(f"{self._where()}: {key} is not a configsync group manifest")
        if document.get("format") != FORMAT:
            raise TransportError(f"{self._where()}: {key} has an unsupported format")
        if document.get("group") != self.group:
            other = document.get("group")
            named = repr(other[:64]) if isinstance(other, str) else "none"
            raise TransportError(
                f"{self._where()}: {key} belongs to replication group {named}, "
                f"not {self.group!r}: refused"
            )
        self._group_checked = True

    def _own_head(self) -> int:
        """This node's last segment number: its latest snapshot, then the segments after it
        (two list requests per instance, whatever the history)."""
        if self._head is None:
            self._own_snapshots = self._snapshots(self.node)
            base = self._own_snapshots[-1].seq if self._own_snapshots else 0
            self._head = self._last_seq(self.node, after=base, default=base)
        return self._head

    def _last_seq(self, writer: str, *, after: int, default: int) -> int:
        last = default
        folder = self.layout.segments_of(writer)
        start = self.layout.after(writer, after)
        token: str | None = None
        while True:
            answer = self._list(folder, start_after=start, token=token)
            for stored in self._stored(folder, answer):
                last = max(last, stored.seq)
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return last

    def _upkeep(self) -> None:
        """After a push: a snapshot when due, then (once per instance) retention."""
        try:
            head = self._own_head()
            snapshot = self._own_snapshots[-1].seq if self._own_snapshots else 0
            if self.snapshot_every > 0 and head - snapshot >= self.snapshot_every:
                self._snapshot_write(head, snapshot)
            if self.retention_days > 0 and not self._pruned:
                self._pruned = True
                self._prune(head)
        except TransportError as exc:
            self._fault(f"upkeep of this node's segments failed: {exc}")

    def _snapshot_write(self, head: int, previous: int) -> None:
        """Compact this node's stream up to ``head``: the previous snapshot and the segments
        after it (never the whole history), the latest change per record, in origin order."""
        latest: dict[str, Entry] = {}
        if previous:
            entries = self._snapshot(self.node, previous)
            if entries is None:
                return
            latest.update((compaction_key(e.change), e) for e in entries)
        for seq in range(previous + 1, head + 1):
            try:
                changes = self._segment(self.node, seq)
            except _Gone:
                self._fault(f"{self.layout.segment(self.node, seq)}: missing, cannot compact")
                return
            if changes is None:
                return
            latest.update(
                (compaction_key(change), Entry(seq, index, change))
                for index, change in enumerate(changes)
            )
        ordered = sorted(latest.values(), key=lambda e: (e.seq, e.index))
        body = seal(
            kind=SNAPSHOT,
            group=self.group,
            writer=self.node,
            seq=head,
            items=[[e.seq, e.index, e.change] for e in ordered],
            secret=self.secret,
        )
        key = self.layout.snapshot(self.node, head)
        self._put(key, body, exclusive=True)  # taken: another process of this node wrote it
        self._own_snapshots.append(_Stored(head, key, self._now()))

    def _prune(self, head: int) -> None:
        """Delete this node's segments its latest snapshot covers and its older snapshots, once
        older than the retention; never the head segment (readers tell an idle writer from a
        pruned stretch by it). One list request: the oldest 1,000 segments."""
        if not self._own_snapshots:
            return
        covered = self._own_snapshots[-1].seq
        cutoff = self._now() - timedelta(days=self.retention_days)

        def old(stored: _Stored) -> bool:
            return stored.modified is not None and stored.modified < cutoff

        folder = self.layout.segments_of(self.node)
        oldest = self._stored(folder, self._list(folder))
        doomed = [s.key for s in oldest if s.seq <= covered and s.seq < head and old(s)]
        doomed += [s.key for s in self._own_snapshots if s.seq < covered and old(s)]
        for start in range(0, len(doomed), DELETE_BATCH):
            batch = doomed[start : start + DELETE_BATCH]
            answer = self._call(
                "delete_objects",
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            if answer.get("Errors"):
                self._fault(f"retention: {len(answer['Errors'])} objects could not be deleted")
        gone = set(doomed)
        self._own_snapshots = [s for s in self._own_snapshots if s.key not in gone]

    # -- requests -----------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.name} (bucket {self.bucket} at {self.host})"

    def _fault(self, reason: str) -> None:
        if reason not in self.faults:
            self.faults.append(reason)

    def _get(self, key: str) -> bytes | None:
        """The object's bytes; ``None`` when there is no such key."""
        result = self._call("get_object", missing_ok=True, Key=key)
        return None if result is None else bytes(result)

    def _put(self, key: str, body: bytes, *, exclusive: bool) -> bool:
        """Write an object; with ``exclusive`` only when the key is free (``If-None-Match: *``):
        ``False`` when it is taken."""
        params: dict[str, Any] = {"Key": key, "Body": body, "ContentType": "application/json"}
        if exclusive and self._conditional:
            params["IfNoneMatch"] = "*"
            answer = self._call("put_object", precondition_ok=True, **params)
            if answer is not _UNSUPPORTED:
                return answer is not None
            # An older server without conditional writes: numbers are then kept apart only by
            # the per-peer sync lock of the node (one writer process at a time).
            logger.warning("%s: no conditional writes (If-None-Match)", self._where())
            self._conditional = False
            del params["IfNoneMatch"]
        return self._call("put_object", **params) is not None

    def _list(
        self,
        folder: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"Prefix": folder}
        if start_after:
            params["StartAfter"] = start_after
        if delimiter:
            params["Delimiter"] = delimiter
        if token:
            params["ContinuationToken"] = token
        answer = self._call("list_objects_v2", **params)
        return answer if isinstance(answer, dict) else {}

    def _call(
        self,
        operation: str,
        *,
        missing_ok: bool = False,
        precondition_ok: bool = False,
        **params: Any,
    ) -> Any:
        """One S3 request; every failure as a ``TransportError`` that names the bucket and the
        endpoint's host, never a credential. ``missing_ok``: ``None`` for a missing key;
        ``precondition_ok``: ``None`` for a failed ``If-None-Match``. A ``get_object`` answers
        the body's bytes."""
        try:
            answer = getattr(self.client, operation)(Bucket=self.bucket, **params)
            if operation == "get_object":
                return answer["Body"].read()
            return answer
        except ClientError as exc:
            error = exc.response.get("Error") or {}
            code = _CODE.sub("", str(error.get("Code", "")))[:64]
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if missing_ok and code in ("NoSuchKey", "404", "NotFound"):
                return None
            if precondition_ok and (
                code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412
            ):
                return None
            if precondition_ok and (code == "NotImplemented" or status == 501):
                return _UNSUPPORTED
            raise TransportError(f"{self._where()}: {self._problem(code, status)}") from None
        except _UNREACHABLE as exc:
            raise TransportError(f"{self._where()} unreachable: {type(exc).__name__}") from None
        except (NoCredentialsError, PartialCredentialsError):
            raise TransportError(f"{self._where()}: no credentials configured") from None
        except BotoCoreError as exc:
            raise TransportError(f"{self._where()}: {type(exc).__name__}") from None

    def _problem(self, code: str, status: Any) -> str:
        if code == "NoSuchBucket":
            return "no such bucket (check CONFIGSYNC_R2_BUCKET)"
        if code in _CREDENTIAL_CODES or status in (401, 403):
            return (
                f"credentials refused ({code or status}): check CONFIGSYNC_R2_ACCESS_KEY_ID, "
                "CONFIGSYNC_R2_SECRET_ACCESS_KEY and the token's permissions on the bucket"
            )
        return f"request refused ({code or 'error'}, HTTP {status})"
