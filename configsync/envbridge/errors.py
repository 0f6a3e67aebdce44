"""Errors of the .env bridge. None of them ever carries a value from the file or the database."""

from __future__ import annotations

from configsync.crypto.errors import ConfigsyncError


class EnvBridgeError(ConfigsyncError):
    """Base class: the bridge could not run; nothing was changed in either direction."""


class EnvSyntaxError(EnvBridgeError):
    """The file has malformed lines. ``problems`` is a list of ``(line_number, reason)``."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = problems
        first_line, first_reason = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"{path or '.env'}: line {first_line}: {first_reason}{more}; "
            "nothing was changed until it is fixed"
        )


class EnvFileUnavailable(EnvBridgeError):
    """The file cannot be read or written (missing, permissions, not a file, I/O error)."""


class EnvFileChanged(EnvBridgeError):
    """The file changed while the bridge ran; nothing was written, the next run retries."""


class EnvLockTimeout(EnvBridgeError):
    """Another bridge run held the file's lock for too long."""


class EnvConfigError(EnvBridgeError):
    """The bridge's options (``CONFIGSYNC_ENV_*``) are invalid or no file is configured."""
