"""The API's exception handler: DRF's, plus JSON answers for errors Django would render as HTML."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from configsync.crypto.errors import DecryptionError, KeyringError
from configsync.services.audit import AuditWriteError


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus JSON for two errors that would otherwise be an HTML page.

    * a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``: ``413``;
    * a stored value this node cannot decrypt (missing key, tampered token) or an unusable
      keyring: ``500`` naming the record, field and reason — the errors carry no value or token;
    * the audit trail could not be written (``AuditWriteError``): ``503``, and the write or reveal
      it would have recorded did not happen (fail closed); the message names no value.
    """
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": "Request body too large."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, AuditWriteError):
        set_rollback()
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, DecryptionError | KeyringError):
        return Response({"detail": str(exc)}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return exception_handler(exc, context)
