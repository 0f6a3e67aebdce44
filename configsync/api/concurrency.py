"""Optimistic concurrency for the REST API: ``ETag`` out, ``If-Match`` in, 412 on mismatch.

``If-Match`` is optional: a write without it is applied (last writer wins), which keeps simple
scripts simple; a write with it is applied only when it names the record's current ETag (or
``*``). The check runs under ``select_for_update`` in the same transaction as the write, so two
writers holding the same ETag cannot both succeed.
"""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.request import Request

from configsync.versioning import record_etag


class PreconditionFailed(APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The record changed since you read it (If-Match does not match its ETag)."
    default_code = "precondition_failed"


def check_if_match(request: Request, instance: object) -> None:
    """Raise ``PreconditionFailed`` when the request's ``If-Match`` does not match ``instance``."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    current = record_etag(instance)  # type: ignore[arg-type]
    tags = [tag.strip() for tag in header.split(",")]
    if "*" in tags:
        return
    # Weak comparison is not offered: ETags here are strong validators.
    if current not in tags:
        raise PreconditionFailed()
