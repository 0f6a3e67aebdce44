"""One full-duplex sync cycle with one peer, and the comparison behind ``configsync diff``.

``sync_cycle`` is what the Celery task, ``configsync sync`` and the tests call. It does not take
the per-peer lock itself: its callers do (``sync-peer-<id>``, see ``configsync.tasks``), and it
is safe without it anyway: every step is idempotent and every checkpoint is saved only with, or
after, the work it covers.

Order of a cycle:

1. **Pull**: page through the peer's feed from the pull checkpoint. Each page is validated and
   applied in one local transaction that also saves the new pull checkpoint, so an interruption
   at any point (``kill -9`` included) either applied the page and moved the checkpoint, or did
   neither; re-running re-fetches and re-applies at most one page, which answers ``stale``.
2. **Push**: page through our own feed from the push checkpoint, leaving out what the peer itself
   sent us (``received_from``); send each page; save the push checkpoint only after the peer has
   answered. An interruption before the save re-sends the page: the peer answers ``stale``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from django.utils import timezone

from configsync.conf import app_settings
from configsync.models import Conflict, Peer, PeerCheckpoint, ReplicatedRecord, SyncRun
from configsync.replication.errors import ChangeValidationError, TransportError
from configsync.replication.hlc import physical_now_ms
from configsync.selectors.replication import feed_page
from configsync.services.node import node_id
from configsync.services.replication import CONFLICT, STALE, changes_apply
from configsync.transports.base import Transport
from configsync.transports.http import HttpPeerTransport

logger = logging.getLogger(__name__)

_MAX_PAGES = 100_000
MAX_PUSH_BYTES = 1_000_000
"""Largest push body we send: well under Django's default ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""


@dataclass
class SyncResult:
    """What one cycle did. ``ok`` is ``False`` only in the result attached to a raised error."""

    peer: str
    peer_id: int
    pulled: int = 0
    pushed: int = 0
    conflicts: int = 0
    stale: int = 0
    unreadable: int = 0
    ok: bool = False
    error: str = ""
    skew_ms: int | None = None
    run_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SyncCycleError(TransportError):
    """A cycle failed; ``result`` says what it did before failing (and is recorded as a run)."""

    def __init__(self, message: str, *, result: SyncResult, status: int | None = None) -> None:
        super().__init__(message, status=status, skew_ms=result.skew_ms)
        self.result = result


def transport_for(peer: Peer) -> Transport:
    """The transport that reaches ``peer`` (HTTP, signed with ``CONFIGSYNC_SYNC_SECRET``)."""
    return HttpPeerTransport(name=peer.name, base_url=peer.base_url, node=node_id())


@contextmanager
def _link(peer: Peer, transport: Transport | None) -> Iterator[Transport]:
    """``transport`` as given, or one opened for ``peer`` and closed afterwards."""
    if transport is not None:
        yield transport
        return
    link = transport_for(peer)
    try:
        yield link
    finally:
        link.close()


def _checkpoint(peer: Peer, direction: str) -> PeerCheckpoint:
    checkpoint, _ = PeerCheckpoint.objects.get_or_create(peer=peer, direction=direction)
    return checkpoint


def _learn_node(peer: Peer, remote_node: str) -> None:
    if remote_node == node_id():
        raise TransportError(f"peer {peer.name} is this node itself (same node id)")
    if remote_node and peer.node_id != remote_node:
        if peer.node_id:
            logger.warning(
                "peer %s changed node id from %s to %s", peer.name, peer.node_id, remote_node
            )
        Peer.objects.filter(pk=peer.pk).update(node_id=remote_node)
        peer.node_id = remote_node
        # Conflicts it pushed to us before we knew its id were filed under that id.
        Conflict.objects.filter(source=remote_node).update(source=peer.name)


def sync_cycle(
    *,
    peer_id: int,
    pull: bool = True,
    push: bool = True,
    transport: Transport | None = None,
) -> SyncResult:
    """Run one cycle with the peer ``peer_id`` (pull, then push); record it as a ``SyncRun``.

    Returns the result when the cycle succeeded. Raises :class:`SyncCycleError` (a
    ``TransportError``, which the Celery task retries) when the peer is down, refuses a
    request, answers garbage or sends changes this node refuses (clock skew included); the error's
    ``result`` and the recorded run carry the reason and what was done before the failure.
    ``Peer.DoesNotExist`` when there is no such peer.
    """
    peer = Peer.objects.get(pk=peer_id)
    run = SyncRun.objects.create(peer=peer)
    result = SyncResult(peer=peer.name, peer_id=peer.pk, run_id=run.pk)
    try:
        with _link(peer, transport) as link:
            if pull:
                _pull(peer, link, result)
            if push:
                _push(peer, link, result)
    except (TransportError, ChangeValidationError) as exc:
        if isinstance(exc, ChangeValidationError):
            reason = f"peer {peer.name} sent changes this node refuses: {exc}"
            result.skew_ms = exc.skew_ms if exc.skew_ms is not None else result.skew_ms
        else:
            reason = str(exc)
            result.skew_ms = exc.skew_ms if exc.skew_ms is not None else result.skew_ms
        result.error = reason
        _finish(run, result)
        raise SyncCycleError(reason, result=result, status=getattr(exc, "status", None)) from None
    except Exception as exc:
        result.error = f"{type(exc).__name__}: internal error"
        _finish(run, result)
        raise
    result.ok = True
    _finish(run, result)
    return result


def _finish(run: SyncRun, result: SyncResult) -> None:
    SyncRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(),
        ok=result.ok,
        error=result.error[:2000],
        pulled=result.pulled,
        pushed=result.pushed,
        conflicts=result.conflicts,
        skew_ms=result.skew_ms,
    )


def _observe_skew(result: SyncResult, remote_clock_ms: Any, sent_ms: int) -> None:
    if isinstance(remote_clock_ms, int):
        midpoint = (sent_ms + physical_now_ms()) // 2
        result.skew_ms = remote_clock_ms - midpoint


def _pull(peer: Peer, link: Transport, result: SyncResult) -> None:
    checkpoint = _checkpoint(peer, PeerCheckpoint.Direction.PULL)
    cursor = checkpoint.cursor
    limit = int(app_settings.SYNC_BATCH_SIZE)
    for _ in range(_MAX_PAGES):
        sent = physical_now_ms()
        page = link.pull(cursor, limit)
        _observe_skew(result, getattr(page, "clock_ms", None), sent)
        _learn_node(peer, page.node)
        if page.has_more and page.next_cursor == cursor and not page.changes:
            raise TransportError(f"peer {peer.name} answered garbage (feed does not advance)")
        items = changes_apply(
            changes=page.changes,
            source_node=page.node,
            source_name=peer.name,
            checkpoint=(checkpoint.pk, page.next_cursor),
        )
        for item in items:
            if item.status == STALE:
                result.stale += 1
            else:
                result.pulled += 1
                result.conflicts += item.status == CONFLICT
            result.unreadable += item.unreadable
        cursor = page.next_cursor
        if not page.has_more:
            return
    raise TransportError(f"peer {peer.name}: feed did not end after {_MAX_PAGES} pages")


def _push(peer: Peer, link: Transport, result: SyncResult) -> None:
    checkpoint = _checkpoint(peer, PeerCheckpoint.Direction.PUSH)
    cursor = checkpoint.cursor
    limit = min(int(app_settings.SYNC_BATCH_SIZE), int(app_settings.MAX_PUSH_BATCH))
    for _ in range(_MAX_PAGES):
        page = feed_page(cursor=cursor, limit=limit, exclude_node=peer.node_id)
        for chunk in _chunks(page.changes):
            answer = link.push(chunk)
            _learn_node(peer, answer.node)
            for item in answer.results:
                status = item.get("status") if isinstance(item, dict) else None
                if status == STALE:
                    result.stale += 1
                elif status in ("applied", CONFLICT):
                    result.pushed += 1
                    result.conflicts += status == CONFLICT
                else:
                    raise TransportError(f"peer {peer.name} answered garbage (push result)")
        PeerCheckpoint.objects.filter(pk=checkpoint.pk).update(
            cursor=page.next_cursor, updated_at=timezone.now()
        )
        cursor = page.next_cursor
        if not page.has_more:
            return
    raise TransportError(f"peer {peer.name}: our feed did not end after {_MAX_PAGES} pages")


def _chunks(changes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split a page so that no request body exceeds ``MAX_PUSH_BYTES`` (one item at least)."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for change in changes:
        item_size = len(json.dumps(change, separators=(",", ":")))
        if current and size + item_size > MAX_PUSH_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(change)
        size += item_size + 1
    if current:
        chunks.append(current)
    return chunks


# --- diff ---------------------------------------------------------------------------------------


@dataclass
class SyncDiff:
    """How this node's records compare with a peer's, by version (never by value)."""

    peer: str
    same: int = 0
    only_local: list[dict[str, Any]] = field(default_factory=list)
    only_remote: list[dict[str, Any]] = field(default_factory=list)
    differ: list[dict[str, Any]] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not (self.only_local or self.only_remote or self.differ)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_sync": self.in_sync}


def sync_diff(*, peer_id: int, transport: Transport | None = None) -> SyncDiff:
    """Compare every record's version here with the peer's (its digest endpoint).

    A record only one side has is listed unless that side holds a tombstone; records whose HLC
    differs are listed with both timestamps. ``TransportError`` when the peer cannot answer.
    """
    peer = Peer.objects.get(pk=peer_id)
    remote: dict[tuple[str, str], tuple[str, bool]] = {}
    cursor = ""
    with _link(peer, transport) as link:
        for _ in range(_MAX_PAGES):
            page = link.digest(cursor, 1000)
            for item in page.changes:
                if not isinstance(item, dict):
                    raise TransportError(f"peer {peer.name} answered garbage (digest)")
                remote[(str(item.get("model")), str(item.get("key")))] = (
                    str(item.get("hlc")),
                    bool(item.get("deleted")),
                )
            cursor = page.next_cursor
            if not page.has_more:
                break
    local = {
        (label, key): (hlc, deleted)
        for label, key, hlc, deleted in ReplicatedRecord.objects.values_list(
            "model_label", "natural_key", "hlc", "deleted"
        ).iterator()
    }
    diff = SyncDiff(peer=peer.name)
    for ident in sorted(set(local) | set(remote)):
        mine, theirs = local.get(ident), remote.get(ident)
        entry = {
            "model": ident[0],
            "key": ident[1],
            "local_hlc": mine[0] if mine else None,
            "remote_hlc": theirs[0] if theirs else None,
        }
        if mine and theirs:
            if mine[0] == theirs[0] or (mine[1] and theirs[1]):
                diff.same += 1
            else:
                diff.differ.append(entry)
        elif mine:
            if mine[1]:
                diff.same += 1
            else:
                diff.only_local.append(entry)
        elif theirs:
            if theirs[1]:
                diff.same += 1
            else:
                diff.only_remote.append(entry)
    return diff
