"""One full-duplex sync cycle with one peer, and the replication-log protocol it follows.

``sync_cycle`` is what the per-peer policy (``configsync.replication.services.sync``, called by
the Celery task and ``configsync sync``) and the tests call. It does not take the per-peer lock
itself: the policy does (``sync_lock_name``), and it is safe without it anyway: every step is
idempotent and every checkpoint is saved only with, or after, the work it covers. The peer's side
of the log is ``configsync.replication.services.replog``; ``configsync diff`` is
``configsync.replication.services.diff``.

Order of a cycle (after one query reading the peer, its checkpoints, this node's feed position,
clock and mode, ``_head_read``):

0. **Replication log**: read the peer's record of our checkpoints (carried by the first pull
   page, ``?log=true``; ``GET /api/v1/sync/log`` for a push-only cycle or a peer whose page does
   not carry it) and compare each direction's ``session`` with ours (``PeerCheckpoint.session``). A
   mismatch means one side was restored from a backup or rolled back since the two last agreed:
   that direction **starts over** from the beginning of the feed, echoes included (see below).
1. **Pull**: page through the peer's feed from the pull checkpoint. Each page is validated and
   applied in one local transaction that also saves the new pull checkpoint, so an interruption
   at any point (``kill -9`` included) either applied the page and moved the checkpoint, or did
   neither; re-running re-fetches and re-applies at most one page, which answers ``stale``.
2. **Push**: page through our own feed from the push checkpoint, leaving out what the peer itself
   sent us (``received_from``); send each page (split in halves while the peer refuses a batch
   as too large: its limits may be below ours); save the push checkpoint only after the peer has
   answered. An interruption before the save re-sends the page: the peer answers ``stale``.
   **Strategy matrix** (``configsync.replication.strategies``, this node's mode read at the start
   of each direction): a pulled change of a data type whose row lacks ``external_to_local`` (or
   has sync disabled; every row in ``LOCAL_ONLY``) is not applied, a change of ours whose row
   lacks ``local_to_external`` is not sent; the checkpoints still move past them, so turning a
   direction back on carries later changes, not the ones left out meanwhile (``configsync diff``
   lists those).
3. **Record**: for each direction whose cursor moved (or that started over, or whose record on
   the peer lags ours), a new random session is recorded on the peer (``POST /api/v1/sync/log``)
   and then saved in our checkpoint. An idle cycle records nothing: one request in all (the
   pull of an empty page, carrying the log), as before the log existed.

A **push-only cycle** (push on write, ``_push_only``) runs 2 before 0 and 3: its first push asks
for the log and, when it is the only request, carries the new push checkpoint for the peer to
record if its entry still holds our session (a compare-and-set); a log that disagrees starts the
direction over after that push, as it would have before it. Pushing first is safe because
re-delivery is idempotent; the crash points below are unchanged (a checkpoint recorded on the
peer but not yet here differs, and the direction starts over).

**Restores (replication log).** In the manner of CouchDB's replication log, each direction's
checkpoint is kept on both sides with the same random session. A database restored from a backup
(or otherwise rolled back) holds an older session than its peer, or none: the two differ, and
that direction starts over. Starting over includes what the peer itself sent us (pull asks for
``echoes``, push does not leave out ``received_from`` = the peer): the restored node may have
lost exactly the records it wrote after the backup and its peer had received, which the echo
rule would otherwise never send back. Re-delivery is idempotent (``stale``), so a start-over costs
one full cycle, never data. A restored node's feed also restarts below its peers' pull cursors;
their pull direction starts over too, so its new writes are not skipped.

Crash points of step 3, and why each is safe:

- before the peer recorded the new session: both sides still hold the old one and the cursor
  already saved locally; the next cycle matches and records again (the peer's cursor lags ours).
- after the peer recorded it, before we saved it (crash, or its answer lost): the sessions
  differ, and the next cycle starts that direction over: one full cycle, nothing lost.
- a pull page applied but the cycle died before step 3: the checkpoint's cursor moved with the
  page (same transaction), the sessions still agree; the next cycle resumes from the cursor and
  records the new session then. A backup taken at that moment and restored later holds the old
  session while the peer holds a newer one: detected.

A false match (both sides holding the same session while one lost work) needs a restore to a
backup taken after the last recording of a direction whose cursor has moved since without a new
recording; every cursor move is recorded at the end of the cycle that made it, and a peer that
keeps no log (an older release answering 404) disables the check for that peer only.

**Clocks.** Every answer of the peer carries its clock (``clock_ms``, else the HTTP ``Date``):
the run records the skew, the peer's feed pages also carry the last timestamp its HLC issued
(``hlc_ms``), and the pull passes the source's effective clock error to ``changes_apply``
(``source_skew_ms``) so conflicts it may have decided are marked skew-affected. After every cycle,
``selectors.status.clock_assess`` judges this node's own clock; when it is out of bounds the
cycle logs one ERROR naming the recovery.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection
from django.utils import timezone

from configsync.conf import app_settings
from configsync.exceptions import ConfigsyncError
from configsync.models import (
    Conflict,
    NodeClock,
    NodeIdentity,
    Peer,
    PeerCheckpoint,
    SyncRun,
)
from configsync.replication import registry
from configsync.replication.errors import ChangeValidationError, CursorError, TransportError
from configsync.replication.hlc import HLC, WALL_DIGITS, HLCParseError, physical_now_ms
from configsync.replication.page import FeedPage
from configsync.replication.selectors.feed import clock_hlc_ms, cursor_parse, feed_page
from configsync.replication.selectors.mode import mode_transports, strategy_matrix
from configsync.replication.selectors.status import CLOCK_OUT_OF_BOUNDS, clock_assess
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.link import peer_link
from configsync.replication.services.wire import (
    APPLIED,
    CLOCK_SKEW,
    CONFLICT,
    QUARANTINED,
    STALE,
    PreChecked,
    changes_precheck,
)
from configsync.replication.strategies import EXTERNAL_TO_LOCAL, LOCAL_TO_EXTERNAL
from configsync.replication.transports.base import (
    PushRecord,
    PushResult,
    ReplicationLogAnswer,
    Transport,
)
from configsync.services.node import node_id

logger = logging.getLogger(__name__)

MAX_PAGES = 100_000
"""Pages a feed may take before a cycle (or a diff) gives up on the peer as answering garbage."""
MAX_PUSH_BYTES = 1_000_000
"""Largest push body we send: well under Django's default ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""

_DIRECTIONS = (PeerCheckpoint.Direction.PULL, PeerCheckpoint.Direction.PUSH)
_NODE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""A node id as the HLC's node part (and ``Peer.node_id``) holds it."""
_CURSOR_TEXT = re.compile(r"[\x21-\x7e]*")
"""A cursor ``PeerCheckpoint.cursor`` can keep on every backend (printable ASCII), at most the
transport's ``max_cursor_length`` long (what the peer's log accepts)."""
_CLOCK_LIMIT_MS = 10**WALL_DIGITS
"""A clock (ms since the epoch) or a skew beyond this is garbage: no HLC can carry it, and a
``SyncRun`` could not record it (a 64-bit column)."""


def _plausible_ms(value: Any) -> bool:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return ok and -_CLOCK_LIMIT_MS < value < _CLOCK_LIMIT_MS


@dataclass
class SyncResult:
    """What one cycle did. ``ok`` is ``False`` only in the result attached to a raised error.

    ``quarantined``: items set aside in this cycle, here (pulled items this node could not store)
    or by the peer (pushed items it answered ``quarantined``); ``held_for_skew``: of the latter,
    those the peer holds because their timestamp is beyond its allowed clock skew.
    ``restarted``: directions that started over after a replication-log mismatch.
    ``clock_ahead_ms``: the timestamps this node issues minus the peer's clock.
    ``left_out``: changes the strategy matrix kept out of this cycle (a data type whose row has
    sync disabled or lacks the direction), pulled and pushed together.
    """

    peer: str
    peer_id: int
    pulled: int = 0
    pushed: int = 0
    conflicts: int = 0
    stale: int = 0
    unreadable: int = 0
    quarantined: int = 0
    held_for_skew: int = 0
    left_out: int = 0
    ok: bool = False
    error: str = ""
    skew_ms: int | None = None
    clock_ahead_ms: int | None = None
    restarted: list[str] = field(default_factory=list)
    run_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SyncCycleError(TransportError):
    """A cycle failed; ``result`` says what it did before failing (and is recorded as a run)."""

    def __init__(self, message: str, *, result: SyncResult, status: int | None = None) -> None:
        super().__init__(message, status=status, skew_ms=result.skew_ms)
        self.result = result


class SyncSkipped(ConfigsyncError):
    """``sync_cycle(enabled_only=True)``: the peer is gone, disabled or not used by this node's
    deployment mode; nothing ran and nothing was recorded."""


@dataclass
class _Head:
    """What a cycle reads before anything else, in one query (see :func:`_head_read`)."""

    peer: Peer
    checkpoints: dict[str, PeerCheckpoint]
    """The peer's checkpoints that exist (a first cycle creates the missing ones)."""
    epoch: str
    """This node's feed: its epoch and last sequence (``""``, ``0`` before the first change)."""
    last_seq: int
    hlc_ms: int | None
    """``NodeClock.last_wall_ms`` (``selectors.feed.clock_hlc_ms``)."""
    mode: str
    """The mode this cycle runs under (``selectors.mode.cycle_mode``), read once per cycle."""
    moved: bool = False
    """This cycle applied pulled changes: our feed and clock have moved since the read."""

    def checkpoint(self, direction: str) -> PeerCheckpoint:
        if direction not in self.checkpoints:
            self.checkpoints[direction], _ = PeerCheckpoint.objects.get_or_create(
                peer=self.peer, direction=direction
            )
        return self.checkpoints[direction]

    def at_end(self, cursor: str) -> bool:
        """Whether ``cursor`` (one of this node's feed) stands at its last change: nothing to
        push. A cursor of another epoch, or past the end (a restored database), is not; nor
        is any once this cycle applied pulled changes (a merged version goes back at once)."""
        if self.moved:
            return False
        try:
            position = cursor_parse(cursor)
        except CursorError:
            return False
        return bool(self.epoch) and position.epoch == self.epoch and position.seq == self.last_seq


def _head_read(peer_id: int) -> _Head | None:
    """The peer, its checkpoints, this node's feed position and clock, and its stored mode, in
    one query; ``None`` when there is no such peer.

    An idle cycle costs this query, one request and the run's row: reading them one by one was
    most of the nine queries an idle cycle used to cost. Plain SQL (left joins of single rows):
    the ORM took longer to build it than the database to answer it.
    """
    quote = connection.ops.quote_name

    def column(model: Any, name: str) -> str:
        return quote(model._meta.get_field(name).column)

    def table(model: Any) -> str:
        return quote(model._meta.db_table)

    peer_fields = Peer._meta.concrete_fields
    checkpoint_fields = ("id", "cursor", "session")
    select = [f"p.{quote(str(field.column))}" for field in peer_fields]
    select += [f"{d}.{column(PeerCheckpoint, f)}" for d in _DIRECTIONS for f in checkpoint_fields]
    select += [f"c.{column(NodeClock, f)}" for f in ("epoch", "last_seq", "last_wall_ms")]
    select.append(
        f"(SELECT {column(NodeIdentity, 'deployment_mode')} FROM {table(NodeIdentity)}"  # noqa: S608
        f" ORDER BY {column(NodeIdentity, 'id')} LIMIT 1)"
    )
    joins = "".join(
        f" LEFT JOIN {table(PeerCheckpoint)} {d} ON {d}.{column(PeerCheckpoint, 'peer')}"
        f" = p.{column(Peer, 'id')} AND {d}.{column(PeerCheckpoint, 'direction')} = %s"
        for d in _DIRECTIONS
    )
    # Identifiers come from the models' metadata (quoted); values are parameters.
    sql = (
        f"SELECT {', '.join(select)} FROM {table(Peer)} p{joins}"  # noqa: S608
        f" LEFT JOIN {table(NodeClock)} c ON c.{column(NodeClock, 'id')} = %s"
        f" WHERE p.{column(Peer, 'id')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*_DIRECTIONS, NodeClock.ROW_ID, peer_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = iter(row)
    peer = Peer.from_db(
        connection.alias,
        [field.attname for field in peer_fields],
        [next(values) for _ in peer_fields],
    )
    found: dict[str, PeerCheckpoint] = {}
    for direction in _DIRECTIONS:
        pk, cursor_text, session = (next(values) for _ in checkpoint_fields)
        if pk is not None:
            found[direction] = PeerCheckpoint(
                pk=pk, peer=peer, direction=direction, cursor=cursor_text, session=session
            )
    epoch, last_seq, wall_ms, stored = values
    return _Head(
        peer=peer,
        checkpoints=found,
        epoch=epoch or "",
        last_seq=int(last_seq or 0),
        hlc_ms=wall_ms,
        # as selectors.mode.cycle_mode, from the stored mode read with the rest
        mode=stored or str(app_settings.DEPLOYMENT_MODE or "") or "LOCAL_EXTERNAL",
    )


class _Run:
    """The cycle's ``SyncRun`` row: written once at the end (one ``INSERT``), or, for a cycle of
    more than one page, opened when the second page starts (so ``status`` shows a long cycle
    running, and a killed one leaves its row unfinished) and completed at the end."""

    def __init__(self, peer: Peer) -> None:
        self.row = SyncRun(peer=peer, started_at=timezone.now())
        self.saved = False

    def open(self) -> None:
        if not self.saved:
            # raw: keep ``started_at`` (its auto_now_add would stamp the time of this INSERT)
            self.row.save_base(raw=True, force_insert=True)
            self.saved = True


def _learn_node(peer: Peer, remote_node: str) -> None:
    if remote_node and not _NODE_ID.fullmatch(remote_node):
        raise TransportError(f"peer {peer.name} answered garbage (not a node id)")
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


@dataclass
class _Direction:
    """One direction of this cycle: where it starts and what the peer recorded of it."""

    checkpoint: PeerCheckpoint
    start: str
    restart: bool
    logged: bool
    remote_session: str = ""
    remote_cursor: str | None = None
    before: str = ""
    """The checkpoint's cursor and session when the cycle began."""
    session_before: str = ""
    after: str | None = None
    """The cursor the direction saved in this cycle (``None``: it saved none)."""


def sync_cycle(
    *,
    peer_id: int,
    pull: bool = True,
    push: bool = True,
    transport: Transport | None = None,
    enabled_only: bool = False,
) -> SyncResult:
    """Run one cycle with the peer ``peer_id`` (log, pull, push, record); record a ``SyncRun``.

    Returns the result when the cycle succeeded. Raises :class:`SyncCycleError` (a
    ``TransportError``, which the Celery task retries) when the peer is down, refuses a
    request, answers garbage or sends changes this node refuses (clock skew included); the error's
    ``result`` and the recorded run carry the reason and what was done before the failure.
    ``Peer.DoesNotExist`` when there is no such peer. Either way, when this node's own clock is
    out of bounds, one ERROR is logged naming the recovery.

    ``enabled_only`` (the scheduled task): :class:`SyncSkipped` instead when the peer is gone,
    disabled or not used by this node's deployment mode (read now). A push-only cycle that finds
    nothing new in our feed since its checkpoint (its change went with an earlier push) makes no
    request and records no run.
    """
    head = _head_read(peer_id)
    if head is None:
        if enabled_only:
            raise SyncSkipped(f"peer {peer_id} is gone")
        raise Peer.DoesNotExist(f"no peer {peer_id}")
    peer = head.peer
    if enabled_only and not peer.enabled:
        raise SyncSkipped(f"peer {peer.name} is disabled")
    if enabled_only and peer.transport not in mode_transports(mode=head.mode):
        # Enqueued (or retrying) from before a mode switch: the new mode's matrix would move
        # this peer's checkpoints past everything it leaves out, for good.
        raise SyncSkipped(f"mode {head.mode} does not use peer {peer.name}")
    result = SyncResult(peer=peer.name, peer_id=peer.pk)
    pushed_to = head.checkpoints.get(PeerCheckpoint.Direction.PUSH)
    if not pull and push and pushed_to is not None and head.at_end(pushed_to.cursor):
        result.ok = True
        return result
    run = _Run(peer)
    try:
        with peer_link(peer, transport) as link:
            try:
                if pull:
                    _full(peer, link, result, head, run, push=push)
                elif push:
                    _push_only(peer, link, result, head, run)
                if link.faults:
                    # What could be read was applied and checkpointed; the rest waits.
                    raise TransportError(f"{peer.name}: " + "; ".join(link.faults[:5]))
            finally:
                if result.skew_ms is None and _plausible_ms(link.last_skew_ms):
                    result.skew_ms = link.last_skew_ms
    except (TransportError, ChangeValidationError) as exc:
        if isinstance(exc, ChangeValidationError):
            reason = f"peer {peer.name} sent changes this node refuses: {exc}"
        else:
            reason = str(exc)
        if result.skew_ms is None and _plausible_ms(exc.skew_ms):
            # a measured skew beats an item's lead as the clock's error
            result.skew_ms = exc.skew_ms
        result.error = reason
        _finish(run, result, error_class=type(exc).__name__)
        _clock_check(peer, result, head)
        raise SyncCycleError(reason, result=result, status=getattr(exc, "status", None)) from None
    except Exception as exc:
        result.error = f"{type(exc).__name__}: internal error"
        _finish(run, result, error_class=type(exc).__name__)
        raise
    result.ok = True
    _finish(run, result)
    _clock_check(peer, result, head)
    return result


def _full(
    peer: Peer, link: Transport, result: SyncResult, head: _Head, run: _Run, *, push: bool
) -> None:
    """Log, pull, push (when ``push``), record: the first pull page carries the log, so an idle
    cycle is one request."""
    first = _fetch(peer, link, result, head.checkpoint("pull").cursor, log=True)
    if first.log is not None:
        log: ReplicationLogAnswer | None = ReplicationLogAnswer(node=first.node, entries=first.log)
    else:
        log = _log_read(peer, link, result)
    directions = {
        d: _direction(peer, d, log, result, head.checkpoint(d))
        for d, wanted in zip(_DIRECTIONS, (True, push), strict=True)
        if wanted
    }
    state = directions[PeerCheckpoint.Direction.PULL]
    # Starting over: the page fetched from the old cursor is not used.
    _pull(peer, link, result, state, head, run, first=None if state.restart else first)
    if push:
        _push(peer, link, result, directions[PeerCheckpoint.Direction.PUSH], head, run)
    for direction, direction_state in directions.items():
        _record(peer, link, direction, direction_state)


def _push_only(peer: Peer, link: Transport, result: SyncResult, head: _Head, run: _Run) -> None:
    """Push first, checking the log with it: the change reaches the peer after one round trip.

    The first request asks for the peer's log (``Transport.push_with_log``) and, when it is the
    cycle's only one, has the peer record our new push checkpoint if its entry still holds our
    session: an agreeing log and a recorded checkpoint in one request, the usual push-on-write
    cycle. Otherwise the log (from the answer, else ``log_get``) is compared after the push: a
    mismatch starts the direction over from the beginning, echoes included, exactly as if found
    before (re-delivery is idempotent); then the checkpoint is recorded as any cycle does. A
    cycle that sent nothing (it only moved past what the peer sent us) neither checks nor
    records: it put nothing of ours on the peer that a restore could lose.
    """
    checkpoint = head.checkpoint("push")
    state = _Direction(
        checkpoint,
        checkpoint.cursor,
        restart=False,
        logged=False,
        before=checkpoint.cursor,
        session_before=checkpoint.session,
    )
    answer = _push(peer, link, result, state, head, run, first_asks=True)
    if answer is None or answer.recorded:
        return
    if answer.log is not None:
        log: ReplicationLogAnswer | None = ReplicationLogAnswer(
            node=peer.node_id, entries=answer.log
        )
    else:
        log = _log_read(peer, link, result)
    checked = _direction(peer, PeerCheckpoint.Direction.PUSH, log, result, checkpoint)
    if checked.restart:
        _push(peer, link, result, checked, head, run)
    else:
        checked.after = state.after
    _record(peer, link, PeerCheckpoint.Direction.PUSH, checked)


def _finish(run: _Run, result: SyncResult, *, error_class: str = "") -> None:
    """Record the run's outcome and log it: one structured line per run (``log_sync_run``)."""
    finished = timezone.now()
    outcome = {
        "finished_at": finished,
        "ok": result.ok,
        "error": result.error[:2000],
        "pulled": result.pulled,
        "pushed": result.pushed,
        "conflicts": result.conflicts,
        "quarantined": result.quarantined,
        "skew_ms": result.skew_ms,
    }
    if run.saved:
        SyncRun.objects.filter(pk=run.row.pk).update(**outcome)
    else:
        for name, value in outcome.items():
            setattr(run.row, name, value)
        run.open()
    result.run_id = run.row.pk
    log_sync_run(
        peer=run.row.peer,
        result=result,
        duration_seconds=max((finished - run.row.started_at).total_seconds(), 0.0),
        error_class=error_class,
    )


def log_sync_run(
    *, peer: Peer, result: SyncResult, duration_seconds: float, error_class: str = ""
) -> None:
    """One INFO line per sync run (its outcome a field: the failure itself is reported by whoever
    ran the cycle — the worker's task logs it, the CLI prints it),  ``key=value`` in the message and
    the same fields as ``extra=`` attributes (``sync_peer``, ``sync_transport``,
    ``sync_outcome``, ``sync_pulled``, ``sync_pushed``, ``sync_conflicts``,
    ``sync_duration_ms``, ``sync_duration_seconds``, ``sync_error_class``, ``sync_run_id``)
    for a JSON formatter. Counts, the peer's name, its transport and the error's class only:
    never the error's text (it may quote what the peer answered), a value, a key or a URL."""
    outcome = "ok" if result.ok else "error"
    fields: dict[str, Any] = {
        "peer": peer.name,
        "transport": peer.transport,
        "outcome": outcome,
        "pulled": result.pulled,
        "pushed": result.pushed,
        "conflicts": result.conflicts,
        "duration_ms": round(duration_seconds * 1000),
        "duration_seconds": round(duration_seconds, 3),
        "error_class": error_class or "-",
        "run_id": result.run_id,
    }
    logger.info(
        "sync run " + " ".join(f"{name}=%s" for name in fields),
        *fields.values(),
        extra={f"sync_{name}": value for name, value in fields.items()},
    )


def _clock_check(peer: Peer, result: SyncResult, head: _Head) -> None:
    """Judge this node's clock after a cycle; one ERROR (with the recovery) when out of bounds.

    The clock as the cycle's first query read it, unless the cycle pulled changes (receiving
    them may have moved it): then read again."""
    clock = clock_assess(
        now_ms=physical_now_ms(),
        hlc_ms=clock_hlc_ms() if head.moved else head.hlc_ms,
        peer_skews={peer.name: result.skew_ms},
    )
    if result.skew_ms is not None:
        result.clock_ahead_ms = clock.hlc_ahead_ms - result.skew_ms
    held = (
        f"; peer {peer.name} holds {result.held_for_skew} of this cycle's changes for clock skew"
        if result.held_for_skew
        else ""
    )
    if clock.state == CLOCK_OUT_OF_BOUNDS or result.held_for_skew:
        problems = "; ".join(clock.problems) or "this node's timestamps are beyond the bound"
        logger.error(
            "CLOCK OUT OF BOUNDS (sync with %s): %s%s. Recovery: %s",
            peer.name,
            problems,
            held,
            clock.recovery or "fix this machine's clock (NTP)",
        )
    elif clock.problems and result.skew_ms is not None:
        bound = int(app_settings.MAX_CLOCK_SKEW_SECONDS * 1000)
        if result.skew_ms > bound:
            logger.warning("clock (sync with %s): %s", peer.name, "; ".join(clock.problems))


def _observe_skew(result: SyncResult, remote_clock_ms: Any, sent_ms: int, link: Transport) -> None:
    if isinstance(remote_clock_ms, int) and not isinstance(remote_clock_ms, bool):
        if not 0 <= remote_clock_ms < _CLOCK_LIMIT_MS:
            raise TransportError("peer answered garbage (clock_ms is not a clock)")
        midpoint = (sent_ms + physical_now_ms()) // 2
        result.skew_ms = remote_clock_ms - midpoint
    elif _plausible_ms(link.last_skew_ms):
        result.skew_ms = link.last_skew_ms


def _log_read(peer: Peer, link: Transport, result: SyncResult) -> ReplicationLogAnswer | None:
    """The peer's record of our checkpoints; ``None`` when it keeps none (an older release)."""
    sent = physical_now_ms()
    try:
        answer = link.log_get()
    except TransportError as exc:
        if exc.status == 404:
            logger.info("peer %s keeps no replication log: restore detection off", peer.name)
            return None
        raise
    _observe_skew(result, answer.clock_ms, sent, link)
    _learn_node(peer, answer.node)
    return answer


def _direction(
    peer: Peer,
    direction: str,
    log: ReplicationLogAnswer | None,
    result: SyncResult,
    checkpoint: PeerCheckpoint,
) -> _Direction:
    before = {"before": checkpoint.cursor, "session_before": checkpoint.session}
    if log is None:
        return _Direction(checkpoint, checkpoint.cursor, restart=False, logged=False, **before)
    entry = log.entry(direction)
    remote_session = entry.session if entry else ""
    state = _Direction(
        checkpoint,
        checkpoint.cursor,
        restart=False,
        logged=True,
        remote_session=remote_session,
        remote_cursor=entry.cursor if entry else None,
        **before,
    )
    if checkpoint.session != remote_session:
        logger.warning(
            "peer %s: the %s checkpoints differ (one side was restored or rolled back): "
            "that direction starts over from the beginning",
            peer.name,
            direction,
        )
        result.restarted.append(str(direction))
        state.start, state.restart = "", True
    return state


def _record(peer: Peer, link: Transport, direction: str, state: _Direction) -> None:
    """Step 3: record a new session on the peer, then here, when the direction moved."""
    if not state.logged:
        return
    cursor = state.before if state.after is None else state.after
    if (
        not state.restart
        and cursor == state.before
        and state.remote_cursor == cursor
        and state.remote_session == state.session_before
    ):
        return
    session = uuid.uuid4().hex
    link.log_record(direction=direction, session=session, cursor=cursor)
    # A crash here leaves the sessions different: the next cycle starts this direction over.
    PeerCheckpoint.objects.filter(pk=state.checkpoint.pk).update(
        session=session, updated_at=timezone.now()
    )


def _source_skew(
    result: SyncResult, page_hlc_ms: int | None, walls: tuple[int, int] | None
) -> int | None:
    """The source's effective clock error (ms) as this page shows it, for skew-affected marks.

    The largest of: its measured physical skew, how far the last timestamp its clock issued is
    ahead of ours (a clock set back still issues timestamps ahead), and how far the furthest
    item's timestamp is ahead of ours (a version relayed from a third node whose clock is ahead).
    ``walls``: the earliest and latest wall time of the page's items (:func:`_walls`).
    """
    now = physical_now_ms()
    candidates = [result.skew_ms] if result.skew_ms is not None else []
    if page_hlc_ms is not None:
        candidates.append(page_hlc_ms - now)
    if walls is not None:
        candidates += [wall - now for wall in walls]
    positive = [c for c in candidates if c > 0]
    if positive:
        return max(positive)
    return min(candidates) if candidates else None


def _fetch(
    peer: Peer,
    link: Transport,
    result: SyncResult,
    cursor: str,
    *,
    echoes: bool = False,
    log: bool = False,
) -> FeedPage:
    """One page of the peer's feed, its clock observed and its node id checked."""
    sent, page = _fetch_raw(link, cursor, echoes=echoes, log=log)
    return _fetched(peer, link, result, cursor, sent, page)


def _fetch_raw(
    link: Transport, cursor: str, *, echoes: bool = False, log: bool = False
) -> tuple[int, FeedPage]:
    """The request of :func:`_fetch` (no database work: it may run in the prefetch thread)."""
    sent = physical_now_ms()
    # No more than this node applies in one batch, whatever the batch size is set to.
    limit = min(int(app_settings.SYNC_BATCH_SIZE), int(app_settings.MAX_PUSH_BATCH))
    return sent, link.pull(cursor, limit, echoes=echoes, with_log=log)


def _fetched(
    peer: Peer, link: Transport, result: SyncResult, cursor: str, sent: int, page: FeedPage
) -> FeedPage:
    """The checks of :func:`_fetch`, in the cycle's thread: clock, node id, cursor."""
    _observe_skew(result, getattr(page, "clock_ms", None), sent, link)
    _learn_node(peer, page.node)
    if (
        not _CURSOR_TEXT.fullmatch(page.next_cursor)
        or len(page.next_cursor) > link.max_cursor_length
    ):
        raise TransportError(f"peer {peer.name} answered garbage (not a cursor)")
    feed_advances(peer.name, cursor, page)
    return page


def feed_advances(peer_name: str, cursor: str, page: FeedPage) -> None:
    """``TransportError`` when ``page`` says more follows but its cursor stayed where it was
    read from: every later page would be this one again, and the cycle (or the diff) would
    read it ``MAX_PAGES`` times. A feed that read something moves its cursor past it."""
    if page.has_more and page.next_cursor == cursor:
        raise TransportError(f"peer {peer_name} answered garbage (feed does not advance)")


@dataclass(frozen=True)
class _Prepared:
    """A pulled page made ready to apply without the database (:func:`_prepare`)."""

    runs: list[list[Any]]
    """The items the strategy matrix lets in, cut into runs (:func:`_runs`)."""
    checked: list[PreChecked | None]
    """Per run: its validation, done ahead (``None``: ``changes_apply`` checks it)."""
    left_out: int
    """Items the strategy matrix kept out."""
    walls: tuple[int, int] | None
    """The earliest and latest wall time of the page's items (:func:`_walls`)."""


def _prepare(changes: list[Any], allowed: set[str], *, ahead: bool) -> _Prepared:
    """What applying a page needs that touches no database: its items filtered by the strategy
    matrix and cut into runs, their wall times, and (``ahead``: in the prefetch thread, while
    the previous page applies) each run's validation (``wire.changes_precheck``)."""
    kept, left_out = _allowed_changes(changes, allowed)
    runs = _runs(kept)
    checked = [changes_precheck(run) if ahead else None for run in runs]
    return _Prepared(runs, checked, left_out, _walls(changes))


def _walls(changes: list[Any]) -> tuple[int, int] | None:
    """The earliest and latest wall time of the items whose ``hlc`` parses (``None``: none)."""
    walls = []
    for change in changes:
        try:
            walls.append(HLC.parse(change.get("hlc") if isinstance(change, dict) else None).wall_ms)
        except HLCParseError:
            continue
    return (min(walls), max(walls)) if walls else None


_Ahead = tuple[int, FeedPage, _Prepared | None]


def _fetch_ahead(link: Transport, cursor: str, *, echoes: bool, allowed: set[str]) -> _Ahead:
    """The prefetch thread's work: the request of :func:`_fetch`, then :func:`_prepare` of its
    page (``None`` when that fails: the cycle's thread prepares it and meets the failure)."""
    sent, page = _fetch_raw(link, cursor, echoes=echoes)
    try:
        prepared: _Prepared | None = _prepare(page.changes, allowed, ahead=True)
    except Exception:
        prepared = None
    return sent, page, prepared


class _Prefetch:
    """Fetches the next page of the peer's feed in a thread while this one applies the current
    page (``Transport.prefetches``: transports whose ``pull`` touches no database), and
    prepares it there: filter, runs and validation (:func:`_prepare`), with every database
    access refused in that thread (an item whose validation needs one is checked again when
    applied). Started on the first page that has more, so an idle or one-page cycle starts no
    thread; the pages and every check on them stay in order, and all database work stays in
    the cycle's thread. Measured on a first sync between two PostgreSQL nodes with the page
    applied set-wise: the fetch alone about 13 % faster; with validation ahead see
    docs/benchmarks.md."""

    def __init__(self, link: Transport, allowed: set[str]) -> None:
        self.link = link
        self.allowed = allowed
        self.executor: ThreadPoolExecutor | None = None
        self.pending: tuple[str, Future[_Ahead]] | None = None

    def start(self, cursor: str, *, echoes: bool) -> None:
        if not self.link.prefetches:
            return
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="configsync-prefetch")
        future = self.executor.submit(
            _fetch_ahead, self.link, cursor, echoes=echoes, allowed=self.allowed
        )
        self.pending = (cursor, future)

    def take(self, cursor: str) -> _Ahead | None:
        """The page fetched ahead from ``cursor`` (its failure raised here), else ``None``."""
        if self.pending is None or self.pending[0] != cursor:
            return None
        future, self.pending = self.pending[1], None
        return future.result()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _pull(
    peer: Peer,
    link: Transport,
    result: SyncResult,
    state: _Direction,
    head: _Head,
    run: _Run,
    *,
    first: FeedPage | None = None,
) -> None:
    """Apply the peer's feed from ``state.start`` (``first``: its first page, already fetched);
    the next page is fetched while one is applied (``_Prefetch``)."""
    checkpoint = state.checkpoint
    cursor = state.start
    allowed = _allowed_types(EXTERNAL_TO_LOCAL, head)
    prefetch = _Prefetch(link, allowed)
    # The objects alive now (Django, the app) are left out of the collector's full passes
    # while pages of new objects come and go: those passes scanned them all, again and again.
    # Not when something froze objects already (a pre-forking server): unfreezing is global.
    frozen = gc.get_freeze_count() == 0
    if frozen:
        gc.freeze()
    try:
        for page_number in range(MAX_PAGES):
            if page_number:
                run.open()
            prepared = None
            if first is not None:
                page, first = first, None
            elif (ahead := prefetch.take(cursor)) is not None:
                sent, fetched, prepared = ahead
                page = _fetched(peer, link, result, cursor, sent, fetched)
            else:
                page = _fetch(peer, link, result, cursor, echoes=state.restart)
            if page.has_more:
                prefetch.start(page.next_cursor, echoes=state.restart)
            _pull_apply(peer, result, state, head, checkpoint, page, allowed, prepared)
            cursor = page.next_cursor
            if not page.has_more:
                return
    finally:
        if frozen:
            gc.unfreeze()
        prefetch.close()
    raise TransportError(f"peer {peer.name}: feed did not end after {MAX_PAGES} pages")


def _pull_apply(
    peer: Peer,
    result: SyncResult,
    state: _Direction,
    head: _Head,
    checkpoint: PeerCheckpoint,
    page: FeedPage,
    allowed: set[str],
    prepared: _Prepared | None = None,
) -> None:
    """Apply one pulled page with its checkpoint and count what it did (``prepared``: the
    page's :func:`_prepare`, done ahead in the prefetch thread)."""
    if page.changes or page.next_cursor != state.before or state.restart:
        if prepared is None:
            prepared = _prepare(page.changes, allowed, ahead=False)
        result.left_out += prepared.left_out
        skew = _source_skew(result, page.hlc_ms, prepared.walls)
        runs = prepared.runs
        head.moved = True
        items = []
        for index, (part, checked) in enumerate(zip(runs, prepared.checked, strict=True), 1):
            # The checkpoint moves with the last run only: an interruption before it
            # re-applies the earlier runs next time (they answer ``stale``).
            items += changes_apply(
                changes=part,
                source_node=page.node,
                source_name=peer.name,
                checkpoint=(checkpoint.pk, page.next_cursor) if index == len(runs) else None,
                source_skew_ms=skew,
                checked=checked,
            )
        state.after = page.next_cursor
    else:
        items = []  # idle: nothing to apply and the checkpoint already says so
    for item in items:
        if item.status == STALE:
            result.stale += 1
        elif item.status == QUARANTINED:
            result.quarantined += 1
        else:
            result.pulled += 1
            result.conflicts += item.status == CONFLICT
        result.unreadable += item.unreadable


def _runs(changes: list[Any]) -> list[list[Any]]:
    """``changes`` cut, in order, into runs that name each record at most once (at least one
    run, maybe empty).

    ``changes_apply`` quarantines the second item of a batch naming a record twice; a shared
    medium's page may hold one version per writer of a record (and, from a bucket, several of
    one writer), each of which must be decided in turn: a successor applied, a concurrent one
    kept as a conflict."""
    runs: list[list[Any]] = [[]]
    seen: set[tuple[str, str]] = set()
    for change in changes:
        ident = (
            (str(change.get("model")), str(change.get("key"))) if isinstance(change, dict) else None
        )
        if ident is not None and ident in seen:
            runs.append([])
            seen = set()
        if ident is not None:
            seen.add(ident)
        runs[-1].append(change)
    return runs


def _allowed_types(direction: str, head: _Head) -> set[str]:
    """The data types whose row of the matrix (this cycle's mode) allows ``direction``."""
    rows = strategy_matrix(mode=head.mode)
    return {name for name, row in rows.items() if row.allows(direction)}


def _allowed_changes(changes: list[Any], allowed: set[str]) -> tuple[list[Any], int]:
    """``changes`` without those of a registered data type outside ``allowed``, and how many
    were left out (both directions: pulled pages and our own pushed ones). Anything else
    (malformed, an unknown model) is kept for validation to refuse or quarantine as before.
    Touches no database (the prefetch thread runs it)."""
    kept: list[Any] = []
    left_out = 0
    for change in changes:
        data_type = (
            registry.data_type_of(change.get("model", "")) if isinstance(change, dict) else None
        )
        if data_type is not None and data_type not in allowed:
            left_out += 1
        else:
            kept.append(change)
    return kept, left_out


def _is_skew_hold(item: dict[str, Any]) -> bool:
    skew = item.get("skew_ms")
    if isinstance(skew, int) and not isinstance(skew, bool):
        return True
    return CLOCK_SKEW in str(item.get("reason", "")).lower()


def _push(
    peer: Peer,
    link: Transport,
    result: SyncResult,
    state: _Direction,
    head: _Head,
    run: _Run,
    *,
    first_asks: bool = False,
) -> PushResult | None:
    """Send our feed from ``state.start``; the first request's answer (``None``: nothing sent).

    Reads nothing when the checkpoint already stands at our feed's last change (the first
    query's position): an idle cycle's push costs no query and no request. ``first_asks``: the
    first request asks for the peer's log, and, when it is the only request (one page, one
    chunk), for the new push checkpoint to be recorded with it (``_push_only``); the
    checkpoint's cursor and session are then saved in one update.
    """
    checkpoint = state.checkpoint
    cursor = state.start
    if not state.restart and head.at_end(cursor):
        return None
    # Starting over after a restore sends what the peer sent us too: we may be the one restored.
    exclude = "" if state.restart else peer.node_id
    limit = min(int(app_settings.SYNC_BATCH_SIZE), int(app_settings.MAX_PUSH_BATCH))
    allowed = _allowed_types(LOCAL_TO_EXTERNAL, head)
    first: PushResult | None = None
    for page_number in range(MAX_PAGES):
        if page_number:
            run.open()
        page = feed_page(node=node_id(), cursor=cursor, limit=limit, exclude_node=exclude)
        kept, left_out = _allowed_changes(page.changes, allowed)
        result.left_out += left_out
        pending = _chunks(kept)
        session = ""
        while pending:
            chunk = pending.pop(0)
            sent_ms = physical_now_ms()
            try:
                if first_asks and first is None:
                    only = not pending and not page.has_more
                    session = uuid.uuid4().hex if only else ""
                    record = (
                        PushRecord(session, page.next_cursor, checkpoint.session) if only else None
                    )
                    answer = link.push_with_log(chunk, record=record)
                else:
                    answer = link.push(chunk)
            except TransportError as exc:
                # A peer with a smaller batch or upload limit refuses the whole batch (400/413,
                # applying nothing): halve it until it takes it, or every cycle fails the same.
                if exc.status in (400, 413) and len(chunk) > 1:
                    half = len(chunk) // 2
                    pending[:0] = [chunk[:half], chunk[half:]]
                    continue
                raise
            first = first or answer
            _observe_skew(result, answer.clock_ms, sent_ms, link)
            _learn_node(peer, answer.node)
            for item in answer.results:
                status = item.get("status") if isinstance(item, dict) else None
                if status == STALE:
                    result.stale += 1
                elif status in (APPLIED, CONFLICT):
                    result.pushed += 1
                    result.conflicts += status == CONFLICT
                elif status == QUARANTINED and isinstance(item, dict):
                    # The peer keeps it aside (and retries it) rather than refusing the batch.
                    result.quarantined += 1
                    result.held_for_skew += _is_skew_hold(item)
                else:
                    raise TransportError(f"peer {peer.name} answered garbage (push result)")
        if page.next_cursor != checkpoint.cursor or state.restart:
            saved: dict[str, Any] = {"cursor": page.next_cursor, "updated_at": timezone.now()}
            if first is not None and first.recorded:
                # The peer recorded it: ours now agrees (a crash before this update leaves the
                # sessions different, and the next cycle starts the direction over).
                saved["session"] = session
            PeerCheckpoint.objects.filter(pk=checkpoint.pk).update(**saved)
            state.after = page.next_cursor
        cursor = page.next_cursor
        if not page.has_more:
            return first
    raise TransportError(f"peer {peer.name}: our feed did not end after {MAX_PAGES} pages")


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
