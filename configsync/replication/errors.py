"""Typed errors of the replication engine. None of them ever carries a value."""

from __future__ import annotations

from typing import Any

from configsync.crypto.errors import ConfigsyncError


class ReplicationError(ConfigsyncError):
    """Base class of replication errors."""


class ChangeValidationError(ReplicationError):
    """A batch of changes was refused as a whole; nothing was applied.

    ``errors`` lists ``{"index": int, "reason": str}`` (index into the batch, ``-1`` for the
    batch itself). ``skew_ms`` is set when the refusal is clock skew: how far the furthest item
    was ahead of this node's clock.
    """

    def __init__(self, errors: list[dict[str, Any]], *, skew_ms: int | None = None) -> None:
        self.errors = errors
        self.skew_ms = skew_ms
        first = errors[0]["reason"] if errors else "invalid batch"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first}{more}")


class TransportError(ReplicationError):
    """A peer could not be reached, refused a request, or answered something unusable.

    ``status`` is the HTTP status when there was one; ``skew_ms`` is set when the peer (or we)
    refused changes for clock skew. Celery tasks retry on this error.
    """

    def __init__(
        self, message: str, *, status: int | None = None, skew_ms: int | None = None
    ) -> None:
        self.status = status
        self.skew_ms = skew_ms
        super().__init__(message)


class CursorError(ReplicationError):
    """A feed cursor does not parse."""


class ConflictResolveError(ReplicationError):
    """A conflict cannot be resolved as asked (unknown, already resolved, bad choice)."""
