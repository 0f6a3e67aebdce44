"""Signed sync requests between peers: HMAC-SHA256 with ``CONFIGSYNC_SYNC_SECRET``.

Why our own and not HTTP Message Signatures (RFC 9421) through a library: the maintained Python
implementations target asymmetric keys and need per-deployment key resolution glue; a shared
group secret with HMAC over a fixed canonical string is short, auditable and dependency-free.

The sender adds four headers::

    X-Configsync-Node       its node id
    X-Configsync-Timestamp  unix seconds (integer)
    X-Configsync-Nonce      32 random hex digits, never reused
    X-Configsync-Signature  hex HMAC-SHA256 of the canonical string

The canonical string is, joined with newlines: the method in upper case, the path with its query
string exactly as sent, the timestamp, the nonce, the hex SHA-256 of the body and the node id.

The receiver (:class:`SyncSignatureAuthentication`, a DRF authentication class) answers 401 when
the headers are missing or malformed (a node id that is not one, a timestamp that is not unix
seconds), the timestamp is further than ``SIGNATURE_MAX_AGE_SECONDS`` from its
clock or the nonce was seen before, and 403 when the signature does not match; refused requests
change nothing. Nonces are remembered in the database (``SyncNonce``), shared by every process of
the node, with one ``INSERT … ON CONFLICT DO NOTHING``; the beat forgets those older than twice
the maximum age (``nonces_prune``: older requests are refused as stale anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from configsync.conf import app_settings
from configsync.replication.checks import NODE_ID_PATTERN
from configsync.replication.hlc import physical_now_ms

HEADER_NODE = "X-Configsync-Node"
HEADER_TIMESTAMP = "X-Configsync-Timestamp"
HEADER_NONCE = "X-Configsync-Nonce"
HEADER_SIGNATURE = "X-Configsync-Signature"
SCHEME = "Configsync-HMAC-SHA256"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def canonical(method: str, path: str, timestamp: str, nonce: str, body: bytes, node: str) -> bytes:
    """The exact bytes that are signed."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), path, timestamp, nonce, digest, node]).encode()


def sign(*, secret: str, method: str, path: str, body: bytes, node: str) -> dict[str, str]:
    """The headers that sign one request (``path`` includes the query string as sent)."""
    timestamp = str(physical_now_ms() // 1000)
    nonce = secrets.token_hex(16)
    mac = hmac.new(
        secret.encode(), canonical(method, path, timestamp, nonce, body, node), hashlib.sha256
    ).hexdigest()
    return {
        HEADER_NODE: node,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: mac,
    }


@dataclass(frozen=True)
class SyncPeerUser:
    """The identity of a request signed by a peer of the replication group."""

    node_id: str

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False

    @property
    def pk(self) -> str:
        return f"peer:{self.node_id}"

    def __str__(self) -> str:
        return self.pk


class SyncSignatureAuthentication(BaseAuthentication):
    """DRF authentication for peer requests; see the module docstring for the rules."""

    def authenticate_header(self, request: Request) -> str:
        return SCHEME

    def authenticate(self, request: Request) -> tuple[SyncPeerUser, str] | None:
        secret = app_settings.SYNC_SECRET
        headers = request.headers
        node = headers.get(HEADER_NODE, "")
        timestamp = headers.get(HEADER_TIMESTAMP, "")
        nonce = headers.get(HEADER_NONCE, "")
        signature = headers.get(HEADER_SIGNATURE, "")
        if not (node or timestamp or nonce or signature):
            return None
        if not secret:
            raise exceptions.AuthenticationFailed(
                "sync is disabled on this node: CONFIGSYNC_SYNC_SECRET is not set"
            )
        if not (node and timestamp and nonce and signature):
            raise exceptions.AuthenticationFailed("incomplete sync signature headers")
        if (
            not NODE_ID_PATTERN.fullmatch(node)
            or len(nonce) > 64
            or not _TIMESTAMP.fullmatch(timestamp)
        ):
            raise exceptions.AuthenticationFailed("malformed sync signature headers")
        max_age = int(app_settings.SIGNATURE_MAX_AGE_SECONDS)
        if abs(physical_now_ms() / 1000 - int(timestamp)) > max_age:
            raise exceptions.AuthenticationFailed("stale signature: timestamp outside the window")
        body = request._request.body
        expected = hmac.new(
            secret.encode(),
            canonical(request.method or "", request.get_full_path(), timestamp, nonce, body, node),
            hashlib.sha256,
        ).hexdigest()
        # Bytes, not str: compare_digest refuses non-ASCII text, and a header may carry any.
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise exceptions.PermissionDenied("bad signature")
        if not nonce_remember(nonce=nonce, node=node):
            raise exceptions.AuthenticationFailed("replayed request: nonce already used")
        return SyncPeerUser(node_id=node), "signature"


def nonce_remember(*, nonce: str, node: str) -> bool:
    """Remember ``nonce``; ``False`` when it was already seen (a replay).

    One statement, ``INSERT … ON CONFLICT (nonce) DO NOTHING`` (PostgreSQL and SQLite alike):
    whether a row was inserted is the answer, so two processes receiving the same request at
    once cannot both accept it. Old nonces are pruned by the beat (:func:`nonces_prune`), not
    here.
    """
    from configsync.models import SyncNonce

    quote = connection.ops.quote_name
    fields = [SyncNonce._meta.get_field(name) for name in ("nonce", "node", "seen_at")]
    columns = [quote(str(getattr(field, "column", ""))) for field in fields]
    seen_at = SyncNonce._meta.get_field("seen_at").get_db_prep_value(timezone.now(), connection)
    # Identifiers come from the model's metadata (quoted), values are parameters.
    sql = (
        f"INSERT INTO {quote(SyncNonce._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES (%s, %s, %s) ON CONFLICT ({columns[0]}) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [nonce, node, seen_at])
        return bool(cursor.rowcount == 1)


def nonces_prune() -> int:
    """Forget nonces older than twice ``SIGNATURE_MAX_AGE_SECONDS`` (a request that old is
    refused as stale before its nonce is looked at); how many. Run by the beat."""
    from configsync.models import SyncNonce

    horizon = timezone.now() - timedelta(seconds=2 * int(app_settings.SIGNATURE_MAX_AGE_SECONDS))
    deleted, _ = SyncNonce.objects.filter(seen_at__lt=horizon).delete()
    return deleted


class IsSyncPeer(BasePermission):
    """Only requests authenticated by a valid peer signature."""

    message = "a signed sync request is required"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, SyncPeerUser)
