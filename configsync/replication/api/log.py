"""``GET|POST /api/v1/sync/log``: this node's replication log, for signed peers only.

In the manner of CouchDB's replication log, every checkpoint of a direction between two nodes is
recorded on both of them with one random ``session``: the peer that owns the checkpoint keeps it
in ``PeerCheckpoint``, this node keeps its copy in ``ReplicationLog`` (keyed by the caller's node
id and the direction as the caller sees it). The caller reads its entries at the start of a cycle
and compares; a mismatch means one side was restored or rolled back, and that direction starts
over (``configsync.replication.services.cycle`` documents the protocol and its crash points).
A caller only
ever reads and writes its own entries: the node id comes from the verified signature.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from configsync.models import PeerCheckpoint, ReplicationLog
from configsync.replication.api.peer import PeerView, clocks, log_entries
from configsync.replication.selectors.feed import feed_head
from configsync.replication.services.replog import ReplicationLogError, replication_log_record
from configsync.services.node import node_id


class LogEntrySerializer(serializers.Serializer):
    direction = serializers.ChoiceField(
        choices=PeerCheckpoint.Direction.choices,
        help_text="As the caller sees it: pull (its cursor into our feed) or push (its feed).",
    )
    session = serializers.CharField(
        max_length=32, help_text="The checkpoint's random id (8 to 32 lowercase hex digits)."
    )
    cursor = serializers.CharField(
        max_length=100, allow_blank=True, help_text="The cursor that checkpoint recorded."
    )


class ReplicationLogSerializer(serializers.Serializer):
    node = serializers.CharField(help_text="This node's id.")
    entries = LogEntrySerializer(many=True)
    clock_ms = serializers.IntegerField(help_text="This node's physical clock (ms).")
    hlc_ms = serializers.IntegerField(
        allow_null=True, help_text="Physical part of the last timestamp its clock issued (ms)."
    )


class LogRecordedSerializer(serializers.Serializer):
    node = serializers.CharField()
    entry = LogEntrySerializer()
    clock_ms = serializers.IntegerField()
    hlc_ms = serializers.IntegerField(allow_null=True)


def _entry(row: ReplicationLog) -> dict[str, Any]:
    return {"direction": row.direction, "session": row.session, "cursor": row.cursor}


class SyncLogView(PeerView):
    """The caller's checkpoints as this node recorded them; record one."""

    @extend_schema(
        operation_id="sync_log_read",
        responses={200: ReplicationLogSerializer},
        description="This node's record of the calling peer's checkpoints. Signed peers only.",
    )
    def get(self, request: Request) -> Response:
        head = feed_head(log_node=self._requester(request))
        return Response({"node": node_id(), "entries": log_entries(head), **clocks(head)})

    @extend_schema(
        operation_id="sync_log_record",
        request=LogEntrySerializer,
        responses={200: LogRecordedSerializer, 400: None},
        description=(
            "Record the calling peer's checkpoint of one direction (replaces the previous one). "
            "Signed peers only."
        ),
    )
    def post(self, request: Request) -> Response:
        body = LogEntrySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            row = replication_log_record(node=self._requester(request), **body.validated_data)
        except ReplicationLogError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"node": node_id(), "entry": _entry(row), **clocks()})
