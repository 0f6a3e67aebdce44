"""The embedded Celery broker: kombu's filesystem transport, with writes readers only see whole.

Used when ``REDIS_URL`` is unset (``make run`` with nothing configured, the SQLite pass of CI):
``settings.base`` calls :func:`register` and sets ``CELERY_BROKER_URL = "configsync-fs://"``,
with every folder under the node's ``var/celery/``. The URL scheme (a kombu transport alias)
rather than ``broker_transport`` selects it, so whoever replaces the broker URL — the
``CELERY_BROKER_URL`` environment variable, a test — gets that URL's own transport.

**Why.** kombu's stock transport creates each message file under its final name and only then
serializes and writes the payload; its reader lists the folder, moves the oldest file away and
parses it. A reader that reaches a file between those two steps gets an empty or half-written
payload, kombu raises ``JSONDecodeError`` as an unrecoverable error and the worker exits, so the
node stops replicating (kombu issue #1551, still open). The exchange tables in its control
folder have the same window: a table file is created (truncated) before it is locked and
written. And the reader "claims" a message with ``shutil.move`` into the system temporary
folder, which is a copy (two consumers can both get the message) when that folder is on another
filesystem.

**What changes** (the folder layout, file names and JSON format stay kombu's):

* a message is serialized first, written to a hidden name in the same folder (``.<name>.part``:
  kombu's reader only takes names of the form ``<stamp>_<uuid>.<queue>.msg``), fsynced, then
  ``os.replace``-d to its real name: the rename is atomic, so a reader sees the whole file or
  none;
* a reader claims a message by renaming it into its channel's own folder under ``claimed/``
  beside the queue folder (same filesystem, so the rename is atomic: exactly one consumer gets
  each message), and removes it only once the message is acknowledged, rejected or put back
  (kombu's removes it on delivery, so a worker killed before its late acknowledgement took the
  task with it). Each channel holds an exclusive ``flock`` on its folder's ``.lock`` for its
  life; a new channel puts back into the queue the messages of every folder whose lock it can
  take, i.e. whose process died (``kill -9`` included): ``acks_late`` keeps its at-least-once
  promise. A file that still does not parse (left by an older version, or damaged on disk)
  is moved to ``rejected/`` and logged; the worker carries on with the next message;
* exchange tables are rewritten the same way (temporary file, ``os.replace``) under an
  exclusive lock on a separate ``.lock`` file, so concurrent binds never lose each other's
  entries and a reader never sees a partial table.

**Why not kombu's SQLAlchemy transport on a SQLite file** (the other broker that needs no
server): it never deletes consumed messages (they are only marked invisible, so the file grows
for the life of the node), offers no way to set WAL mode or a busy timeout short of subclassing
it too, supports no fanout exchanges (so no remote control), and would add SQLAlchemy, a second
ORM, to the dependencies of every deployment for the development default alone. The filesystem
transport's only defect is the write window, which this module closes with two dozen lines.

**Limits**: a dead worker's messages come back when the next channel opens (a worker, beat or
web process starting or publishing), not before; a task may so run twice (tasks are idempotent).
Production deployments use Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

SCHEME = "configsync-fs"
"""The broker URL scheme of this transport (``configsync-fs://``), once :func:`register` ran."""
PART_SUFFIX = ".part"
CLAIMED_FOLDER = "claimed"
REJECTED_FOLDER = "rejected"
LOCK_NAME = ".lock"


def write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file.

    The bytes go to a hidden temporary name in the same folder (hence the same filesystem),
    are fsynced, and the file is renamed into place with ``os.replace`` (atomic on POSIX).
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}{PART_SUFFIX}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class Channel(filesystem.Channel):
    """kombu's filesystem channel whose files are only ever seen whole (see the module)."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        parent = Path(self.data_folder_in).parent
        self._claimed_root = parent / CLAIMED_FOLDER
        self._claimed_root.mkdir(parents=True, exist_ok=True)
        (parent / REJECTED_FOLDER).mkdir(parents=True, exist_ok=True)
        self._claim_folder: Path | None = None  # created at this channel's first claim
        self._claim_lock: int | None = None
        self._claims: dict[str, list[Path]] = {}  # delivery tag -> its claimed file(s)
        self._no_ack_queues: set[str] = set()
        self._recover_abandoned()

    # --- claims: a taken message stays on disk until it is acknowledged, rejected or restored --
    def _claim_folder_ensure(self) -> Path:
        """This channel's folder under ``claimed/``, locked (``flock``) for as long as it lives.

        Made under a hidden name, locked, then renamed into place, so that no other channel
        ever sees it unlocked while its owner lives.
        """
        if self._claim_folder is None:
            name = uuid.uuid4().hex
            hidden = self._claimed_root / f".{name}"
            hidden.mkdir()
            fd = os.open(hidden / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, self._claimed_root / name)
            self._claim_lock, self._claim_folder = fd, self._claimed_root / name
        return self._claim_folder

    def _recover_abandoned(self) -> None:
        """Put back into the queue folder the messages of channels whose process died.

        A folder whose lock can be taken has no living owner (the operating system releases a
        ``flock`` when its holder dies, ``kill -9`` included): its messages were delivered and
        never acknowledged, so they go back under their own names (and so their place in line).
        """
        for folder in self._claimed_root.iterdir():
            if folder.name.startswith(".") or not folder.is_dir() or folder == self._claim_folder:
                continue
            try:
                fd = os.open(folder / LOCK_NAME, os.O_WRONLY)
            except OSError:
                continue  # being removed by its owner or another recoverer
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner lives
                with contextlib.suppress(FileNotFoundError):
                    self._put_back(folder, "taken by a consumer that died")
            except OSError as exc:
                logger.error("embedded broker: cannot recover %s: %s", folder, exc.strerror)
            finally:
                os.close(fd)

    def _put_back(self, folder: Path, why: str) -> None:
        """Move every message in the claim folder ``folder`` back into the queue folder under
        its own name, then remove ``folder`` (its lock last)."""
        for claimed in folder.iterdir():
            if claimed.name != LOCK_NAME:
                os.replace(claimed, Path(self.data_folder_in) / claimed.name)
                logger.warning("embedded broker: redelivering %s, %s", claimed.name, why)
        os.unlink(folder / LOCK_NAME)
        folder.rmdir()

    def _settle(self, delivery_tag: Any) -> None:
        """The message ``delivery_tag`` is acknowledged, rejected or restored: forget its file."""
        for claimed in self._claims.pop(delivery_tag, ()):
            with contextlib.suppress(FileNotFoundError):
                claimed.unlink()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)  # never acknowledged: its claims end at delivery
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        self._settle(delivery_tag)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)
        self._settle(delivery_tag)

    def _restore(self, message: Any) -> None:
        super()._restore(message)  # a new copy in the queue (requeue, or unacked at close)
        self._settle(message.delivery_tag)

    def close(self) -> None:
        super().close()  # restores what is unacknowledged, which settles it
        if self._claim_lock is None or self._claim_folder is None:
            return
        for delivery_tag in list(self._claims):
            self._settle(delivery_tag)  # delivered without acknowledgement (no_ack)
        try:
            # Anything left was claimed but never delivered (e.g. its read failed).
            self._put_back(self._claim_folder, "claimed but never delivered")
        except OSError as exc:
            logger.error("embedded broker: cannot release %s: %s", self._claim_folder, exc)
        os.close(self._claim_lock)
        self._claim_lock = None

    # kombu's base class calls the second parameter "message", its filesystem channel "payload".
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        data = str_to_bytes(dumps(payload))
        # kombu's own naming: the reader sorts by the monotonic stamp and filters by queue.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:
            write_whole(Path(self.data_folder_out) / name, data)
        except OSError as exc:
            raise ChannelError(f"Cannot add a message to {self.data_folder_out!r}") from exc

    def _get(self, queue: str, timeout: Any = None) -> Any:
        wanted = f"{queue}.msg"
        folder = Path(self.data_folder_in)
        claimed_folder = self._claim_folder_ensure()
        for filename in sorted(os.listdir(folder)):
            if filename.partition(".")[2] != wanted:
                continue
            claimed = claimed_folder / filename
            try:
                # Atomic on one filesystem: exactly one consumer wins each message.
                os.rename(folder / filename, claimed)
            except FileNotFoundError:
                continue  # another consumer took it
            except OSError as exc:
                raise ChannelError(f"Cannot claim a message in {str(folder)!r}") from exc
            try:
                payload = claimed.read_bytes()
            except OSError as exc:
                raise ChannelError(f"Cannot read a message in {str(claimed_folder)!r}") from exc
            try:
                message = loads(bytes_to_str(payload))
            except ValueError:
                rejected = folder.parent / REJECTED_FOLDER / filename
                try:
                    os.replace(claimed, rejected)
                except OSError as exc:
                    raise ChannelError(f"Cannot set aside {str(claimed)!r}") from exc
                logger.error("embedded broker: unreadable message set aside in %s", rejected)
                continue
            properties = message.get("properties") if isinstance(message, dict) else None
            delivery_tag = properties.get("delivery_tag") if isinstance(properties, dict) else None
            if delivery_tag is None or queue in self._no_ack_queues:
                claimed.unlink()
            else:
                self._claims.setdefault(delivery_tag, []).append(claimed)
            return message
        raise Empty()

    def _queue_bind(
        self, exchange: str, routing_key: str, pattern: str, queue: str, *args: Any
    ) -> None:
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda table: table if entry in table else [entry, *table])

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        # The virtual channel's own bookkeeping (skipping kombu's in-place table rewrite).
        super(filesystem.Channel, self)._delete(queue, exchange, routing_key, pattern, *args)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda table: [item for item in table if item != entry])

    def _update_table(self, exchange: str, change: Any) -> None:
        """Read, change and atomically replace one exchange table under its lock."""
        path = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        try:
            with _exclusive(path.with_name(f".{path.name}.lock")):
                table = self.get_table(exchange)
                updated = change(table)
                if updated != table:
                    write_whole(path, str_to_bytes(dumps(updated)))
        except OSError as exc:
            raise ChannelError(f"Cannot update the exchange table of {exchange!r}") from exc


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`.

    Each connection keeps its own broker state, where kombu shares one per process: the
    exchange tables in the control folder are the truth, so a connection must not skip writing
    a binding because another connection of the process (perhaps on other folders, or before
    the folder was removed) once declared it. It costs one locked read per declaration.
    """

    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.state = filesystem.virtual.BrokerState()

    @property
    def default_connection_params(self) -> dict[str, Any]:
        """No host and no port: the broker is a folder. kombu's virtual transports default the
        host to ``localhost``, and kombu then warns "No hostname was supplied. Reverting to
        default 'localhost'" every time a ``configsync-fs://`` connection describes itself (each
        publish from ``configsync sync``, the web process, beat): nothing was missing."""
        return {"hostname": None, "port": None}


def register() -> None:
    """Make ``configsync-fs://`` a kombu transport alias for :class:`Transport` (idempotent)."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
