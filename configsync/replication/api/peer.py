"""Peer endpoints under ``/api/v1/sync/``: the change feed, the digest and push.

They accept only requests signed with the group's ``CONFIGSYNC_SYNC_SECRET``
(``configsync.replication.signing``) and are not throttled (a first sync of a large node is many
pages). Thin: they validate and call services/selectors. The replication log's endpoint
(``configsync.replication.api.log``) is a peer endpoint too and builds on ``PeerView``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from configsync.conf import app_settings
from configsync.models import PeerCheckpoint
from configsync.replication.errors import ChangeValidationError, CursorError
from configsync.replication.hlc import physical_now_ms
from configsync.replication.selectors.feed import (
    FeedHead,
    clock_hlc_ms,
    feed_head,
    feed_page,
    replication_log_for,
)
from configsync.replication.selectors.peers import push_source
from configsync.replication.services.receive import changes_receive
from configsync.replication.services.replog import (
    ReplicationLogError,
    replication_log_check,
    replication_log_replace,
)
from configsync.replication.services.wire import APPLIED, CONFLICT, QUARANTINED, STALE
from configsync.replication.signing import (
    HEADER_TIMESTAMP,
    IsSyncPeer,
    SyncPeerUser,
    SyncSignatureAuthentication,
)
from configsync.services.node import node_id


class SyncSignatureScheme(OpenApiAuthenticationExtension):
    """Describes peer request signing in the OpenAPI schema."""

    target_class = "configsync.replication.signing.SyncSignatureAuthentication"
    name = "SyncSignature"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Configsync-Signature",
            "description": (
                "Hex HMAC-SHA256 with CONFIGSYNC_SYNC_SECRET over method, path with query, "
                "X-Configsync-Timestamp, X-Configsync-Nonce, SHA-256 of the body and "
                "X-Configsync-Node (all four headers required)."
            ),
        }


# --- serializers ----------------------------------------------------------------------------


class FeedQuerySerializer(serializers.Serializer):
    since = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Cursor from the last page."
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, help_text="At most this many changes (capped by the node)."
    )
    echoes = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Include what the caller itself sent (left out otherwise): a direction that starts "
            "over after a restore asks for everything."
        ),
    )
    log = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Also answer the caller's replication log entries (as GET /sync/log does), so a "
            "cycle's first page and its restore check cost one request."
        ),
    )


class ChangeSerializer(serializers.Serializer):
    """One feed item (documentation only: items are validated by the replication engine)."""

    model = serializers.CharField(help_text="Replicated model, app_label.modelname.")
    key = serializers.CharField(help_text="Natural key.")
    hlc = serializers.CharField(help_text="Hybrid logical clock: WALL:COUNTER:NODE.")
    origin = serializers.CharField(help_text="Node that made this version.")
    vv = serializers.DictField(child=serializers.CharField(), help_text="Version vector.")
    deleted = serializers.BooleanField(help_text="Tombstone.")
    data = serializers.DictField(  # type: ignore[assignment]  # the wire item's "data"
        allow_null=True, help_text="Wire form; encrypted fields are ciphertext tokens."
    )
    seq = serializers.IntegerField(required=False, help_text="Sequence in the sender's feed.")
    losers = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="Versions that lost to this one."
    )
    resolved = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text='Conflicts this change resolved: {"versions": [hlc, hlc], "chosen": hlc}.',
    )


class _PageSerializer(serializers.Serializer):
    """What a feed page and a digest page share: the node, the cursor and the clocks."""

    node = serializers.CharField()
    next_cursor = serializers.CharField()
    has_more = serializers.BooleanField()
    reset = serializers.BooleanField(help_text="The cursor was from another epoch: started over.")
    clock_ms = serializers.IntegerField(help_text="The node's physical clock (ms).")
    hlc_ms = serializers.IntegerField(
        allow_null=True,
        help_text="Physical part of the last timestamp the node's clock issued (ms).",
    )


class FeedPageSerializer(_PageSerializer):
    changes = ChangeSerializer(many=True)
    log = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="With ?log=true: the caller's replication log entries (direction, session, "
        "cursor).",
    )


class DigestItemSerializer(serializers.Serializer):
    """One digest item: a record's current version, without its data."""

    model = serializers.CharField(help_text="Replicated model, app_label.modelname.")
    key = serializers.CharField(help_text="Natural key.")
    hlc = serializers.CharField(help_text="Hybrid logical clock: WALL:COUNTER:NODE.")
    deleted = serializers.BooleanField(help_text="Tombstone.")


class DigestPageSerializer(_PageSerializer):
    changes = DigestItemSerializer(many=True)


class PushRecordSerializer(serializers.Serializer):
    session = serializers.CharField(
        max_length=32, help_text="The push checkpoint's new session (8 to 32 lowercase hex)."
    )
    cursor = serializers.CharField(
        max_length=100, allow_blank=True, help_text="The cursor this batch takes it to."
    )
    replaces = serializers.CharField(
        max_length=32,
        allow_blank=True,
        help_text="Recorded only if this node's entry holds this session (empty: no entry).",
    )


class PushSerializer(serializers.Serializer):
    changes = serializers.ListField(child=serializers.JSONField(), allow_empty=True)
    record = PushRecordSerializer(
        required=False,
        help_text=(
            "Once the batch is applied, record the caller's push checkpoint in its replication "
            "log (as POST /sync/log does) if the entry still holds ``replaces``; the answer's "
            "``recorded`` says whether it did."
        ),
    )


class PushQuerySerializer(serializers.Serializer):
    log = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Also answer the caller's replication log entries (as GET /sync/log does), so a "
            "push-only cycle checks it without a second request."
        ),
    )


class ItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    model = serializers.CharField()
    key = serializers.CharField()
    status = serializers.ChoiceField(choices=[APPLIED, STALE, CONFLICT, QUARANTINED])
    unreadable = serializers.BooleanField(
        help_text="Holds ciphertext of a key this node lacks: stored and relayed, not readable."
    )
    reason = serializers.CharField(
        required=False,
        help_text=(
            "Quarantined items only: why this node could not store it (never a value). The item "
            "is kept for retry (automatic every cycle) or an operator; the pusher moves on."
        ),
    )


class PushResultSerializer(serializers.Serializer):
    node = serializers.CharField()
    results = ItemResultSerializer(many=True)
    clock_ms = serializers.IntegerField()
    log = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="With ?log=true: the caller's replication log entries (direction, session, "
        "cursor), after ``record``.",
    )
    recorded = serializers.BooleanField(
        required=False, help_text="With ``record``: whether the checkpoint was recorded."
    )


class BatchErrorSerializer(serializers.Serializer):
    """A refused push: ``detail`` with ``errors`` and ``skew_ms`` for a batch of invalid items,
    ``detail`` alone for a refused ``record``, or field -> messages for a malformed body."""

    detail = serializers.CharField(required=False)
    errors = serializers.ListField(  # type: ignore[assignment]
        child=serializers.DictField(), required=False
    )
    skew_ms = serializers.IntegerField(allow_null=True, required=False)


class QueryErrorSerializer(serializers.Serializer):
    """A refused feed query: ``detail`` for a cursor that does not parse, or field -> messages
    for an invalid parameter."""

    detail = serializers.CharField(required=False)


# --- endpoints ------------------------------------------------------------------------------


def clocks(head: FeedHead | None = None) -> dict[str, int | None]:
    """This node's clocks as every peer answer carries them (``clock_ms``, ``hlc_ms``; the
    latter from ``head`` when the view read it)."""
    return {
        "clock_ms": physical_now_ms(),
        "hlc_ms": head.hlc_ms if head is not None else clock_hlc_ms(),
    }


def log_entries(head: FeedHead) -> list[dict[str, str]]:
    """The caller's replication log entries as the peer endpoints answer them."""
    return [
        {"direction": entry.direction, "session": entry.session, "cursor": entry.cursor}
        for entry in head.log
    ]


class PeerView(APIView):
    authentication_classes = [SyncSignatureAuthentication]
    permission_classes = [IsSyncPeer]
    throttle_classes: list = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self._requester(request) == node_id():
            # Two nodes sharing one CONFIGSYNC_NODE_ID would corrupt each other's vectors.
            raise exceptions.PermissionDenied(
                "the caller uses this node's own node id: every node needs its own "
                "CONFIGSYNC_NODE_ID"
            )

    @staticmethod
    def _requester(request: Request) -> str:
        user = request.user
        return user.node_id if isinstance(user, SyncPeerUser) else ""

    def _page(self, request: Request, *, digest: bool) -> Response:
        query = FeedQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        cap = int(app_settings.MAX_PUSH_BATCH)
        limit = min(query.validated_data.get("limit") or int(app_settings.SYNC_BATCH_SIZE), cap)
        cursor = query.validated_data["since"]
        # One query for the head, the clock and the log: an idle page needs nothing more.
        head = feed_head(log_node=self._requester(request))
        try:
            page = None if digest else head.empty_page(node=node_id(), cursor=cursor)
            if page is None:
                page = feed_page(
                    node=node_id(),
                    cursor=cursor,
                    limit=limit,
                    exclude_node=(
                        "" if digest or query.validated_data["echoes"] else self._requester(request)
                    ),
                    digest=digest,
                )
        except CursorError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        answer: dict[str, Any] = {**page.as_dict(), **clocks(head)}
        if query.validated_data["log"] and not digest:
            answer["log"] = log_entries(head)
        return Response(answer)


class SyncChangesView(PeerView):
    """This node's change feed for a signed peer."""

    @extend_schema(
        operation_id="sync_changes",
        parameters=[FeedQuerySerializer],
        responses={200: FeedPageSerializer, 400: QueryErrorSerializer},
        description=(
            "Changes after the cursor ``since`` in sequence order, at most ``limit``; "
            "``next_cursor`` continues, ``has_more`` says whether more remain. Signed peers only."
        ),
    )
    def get(self, request: Request) -> Response:
        return self._page(request, digest=False)


class SyncDigestView(PeerView):
    """Every record's version (model, key, hlc, tombstone), for ``configsync diff``."""

    @extend_schema(
        operation_id="sync_digest",
        parameters=[FeedQuerySerializer],
        responses={200: DigestPageSerializer, 400: QueryErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        return self._page(request, digest=True)


class SyncPushView(PeerView):
    """Apply a batch of a peer's changes: idempotent, one result per item, never stuck."""

    @extend_schema(
        operation_id="sync_push",
        parameters=[PushQuerySerializer],
        request=PushSerializer,
        responses={200: PushResultSerializer, 400: BatchErrorSerializer},
        description=(
            "Applies the batch idempotently; each item is answered applied, stale, conflict or "
            "quarantined (with a reason: this node could not store it and keeps it for retry, "
            "while the rest applies). Only a malformed batch (not a list, too many items) is a "
            "400 applying nothing. Signed peers only."
        ),
    )
    def post(self, request: Request) -> Response:
        query = PushQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        body = PushSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        source = self._requester(request)
        record = body.validated_data.get("record")
        if record is not None:
            try:  # refused before anything is applied
                replication_log_check(
                    node=source,
                    direction=PeerCheckpoint.Direction.PUSH,
                    session=record["session"],
                    cursor=record["cursor"],
                )
            except ReplicationLogError as exc:
                return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        peer_name, mode = push_source(node=source)  # one query
        try:
            results = changes_receive(
                changes=body.validated_data["changes"],
                source_node=source,
                source_name=peer_name,
                source_skew_ms=_pusher_skew_ms(request),
                mode=mode,
            )
        except ChangeValidationError as exc:
            return Response(
                {"detail": str(exc), "errors": exc.errors[:100], "skew_ms": exc.skew_ms},
                status=status.HTTP_400_BAD_REQUEST,
            )
        answer: dict[str, Any] = {
            "node": node_id(),
            "results": [r.as_dict() for r in results],
            "clock_ms": physical_now_ms(),
        }
        if record is not None:
            answer["recorded"] = replication_log_replace(
                node=source, direction=PeerCheckpoint.Direction.PUSH, **record
            )
        if query.validated_data["log"]:
            answer["log"] = [
                {"direction": row.direction, "session": row.session, "cursor": row.cursor}
                for row in replication_log_for(node=source)
            ]
        return Response(answer)


def _pusher_skew_ms(request: Request) -> int | None:
    """The pusher's clock minus ours, from its signed ``X-Configsync-Timestamp`` (whole seconds,
    so accurate to about a second plus the request's transit time)."""
    text = request.headers.get(HEADER_TIMESTAMP, "")
    if not text.isdigit():
        return None
    return int(text) * 1000 - physical_now_ms()
