"""The file side of a run: read the ``.env`` file once, replace it atomically only if unchanged.

:func:`write_atomic` replaces a file via a temporary file in the same directory — written,
flushed, fsynced, given the old file's mode, renamed over the target, then the directory fsynced —
so a crash leaves the old or the new file, never a partial one. Errors name the path and the
operating system's reason, never the file's contents.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime

from configsync.envbridge.envfile import EnvDocument
from configsync.envbridge.errors import EnvFileChanged, EnvFileUnavailable


@dataclass
class FileState:
    """The file as a run read it: its bytes (``None``: absent), parsed, and its mtime."""

    data: bytes | None
    document: EnvDocument
    mtime: datetime | None


def unavailable(verb: str, real: str, exc: OSError) -> EnvFileUnavailable:
    """The error for a file that cannot be read or written (path and reason, no contents)."""
    return EnvFileUnavailable(f"cannot {verb} {real}: {exc.strerror or type(exc).__name__}")


def file_read(real: str) -> FileState:
    """Read and parse ``real`` once (a missing file reads as empty; a malformed one raises)."""
    try:
        with open(real, "rb") as handle:
            data = handle.read()
            mtime = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, tz=UTC)
    except FileNotFoundError:
        return FileState(data=None, document=EnvDocument([]), mtime=None)
    except OSError as exc:
        raise unavailable("read", real, exc) from None
    return FileState(data=data, document=EnvDocument.parse_bytes(data, path=real), mtime=mtime)


def file_write_if_unchanged(real: str, state: FileState, data: bytes) -> None:
    """Replace the file unless someone changed it since this run read it.

    A read-only file or directory is refused up front (an operator's ``chmod a-w`` means "do not
    write this", though a rename could replace it), and so is anything but a regular file.
    """
    directory = os.path.dirname(real)
    if os.path.exists(real):
        if not os.path.isfile(real):
            raise EnvFileUnavailable(f"cannot write {real}: not a regular file")
        if not os.access(real, os.W_OK):
            raise EnvFileUnavailable(f"cannot write {real}: permission denied")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise EnvFileUnavailable(f"cannot write {real}: directory {directory} is not writable")
    try:
        with open(real, "rb") as handle:
            current: bytes | None = handle.read()
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise unavailable("read", real, exc) from None
    if current != state.data:
        raise EnvFileChanged(f"{real} changed during the run; nothing was written, retry")
    try:
        write_atomic(real, data)
    except OSError as exc:
        raise unavailable("write", real, exc) from None


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its mode (a new file gets 0600).

    A temporary file in the same directory is written, flushed and fsynced, given the old file's
    mode (and owner, where permitted), then renamed over ``path``; the directory is fsynced so the
    rename is durable. On any failure the temporary file is removed and ``path`` is untouched.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    try:
        existing: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        existing = None
    fd, tmp = tempfile.mkstemp(prefix=".configsync-env-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if existing is not None:
            os.chmod(tmp, stat.S_IMODE(existing.st_mode))
            with contextlib.suppress(OSError):
                os.chown(tmp, existing.st_uid, existing.st_gid)
        else:
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
