"""Operations endpoints: ``GET /api/v1/health``, ``GET /api/v1/sync/status``,
``POST /api/v1/sync/trigger``. Thin: they call ``configsync.services``/``selectors``.

Health is open (load balancers and the multi-node harness poll it) and unthrottled; it names
backends, never URLs or credentials. Status and trigger use the project's default authentication
and permissions (admin session; API keys where the REST layer adds them).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from configsync.replication.natsfollow.service import nats_status
from configsync.replication.selectors.peers import UnknownPeerError
from configsync.replication.selectors.status import sync_status
from configsync.services.health import health_check
from configsync.services.node import node_id
from configsync.tasks import sync_trigger


class PeerStatusSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    base_url = serializers.CharField()
    enabled = serializers.BooleanField()
    node_id = serializers.CharField(help_text="The peer's node id, learned on first contact.")
    last_run_at = serializers.DateTimeField(allow_null=True)
    last_run_ok = serializers.BooleanField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(help_text="Latest failure's reason (never a value).")
    last_error_at = serializers.DateTimeField(allow_null=True)
    changes_behind = serializers.IntegerField(
        help_text="Our feed entries the peer has not acknowledged (excluding its own)."
    )
    success_rate = serializers.FloatField(
        allow_null=True, help_text="Share of the recent finished runs that succeeded."
    )
    recent_runs = serializers.IntegerField(help_text="Runs the success rate covers.")
    open_conflicts = serializers.IntegerField()
    clock_skew_ms = serializers.IntegerField(
        allow_null=True, help_text="Peer clock minus ours, as last seen."
    )
    clock_state = serializers.ChoiceField(
        choices=["ok", "warning", "out_of_bounds"],
        help_text=(
            "warning: |skew| above CONFIGSYNC_SKEW_WARNING_SECONDS; out_of_bounds: one side's "
            "timestamps are beyond CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS ahead of the other's clock "
            "(its changes are held there)."
        ),
    )
    our_clock_ahead_ms = serializers.IntegerField(
        allow_null=True,
        help_text="The timestamps this node issues now minus the peer's clock, as last seen.",
    )
    open_quarantined = serializers.IntegerField(
        help_text="Changes received from this peer and quarantined here, still open."
    )
    quarantined_last_run = serializers.IntegerField(
        help_text="Changes set aside (here or by the peer) in the last finished run."
    )


class ClockStatusSerializer(serializers.Serializer):
    state = serializers.CharField(help_text="ok, warning or out_of_bounds (this node's clock).")
    physical_ms = serializers.IntegerField(help_text="This machine's clock (ms).")
    hlc_ms = serializers.IntegerField(
        allow_null=True, help_text="Physical part of the last timestamp this node issued (ms)."
    )
    hlc_ahead_ms = serializers.IntegerField(
        help_text="How far the timestamps this node issues now are ahead of its physical clock."
    )
    max_skew_ms = serializers.IntegerField(help_text="CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS in ms.")
    warning_ms = serializers.IntegerField(help_text="CONFIGSYNC_SKEW_WARNING_SECONDS in ms.")
    problems = serializers.ListField(child=serializers.CharField())
    recovery = serializers.CharField(help_text="What to do (empty when the clock is fine).")


class NatsLagSerializer(serializers.Serializer):
    """The NATS JetStream transport (``configsync.replication.natsfollow.service.NatsStatus``)."""

    configured = serializers.BooleanField(help_text="CONFIGSYNC_NATS_URL is set.")
    followed = serializers.BooleanField(
        help_text="This node's mode uses the transport and the nats peer is enabled."
    )
    server = serializers.CharField(help_text="host:port of the server (never credentials).")
    stream = serializers.CharField()
    consumer = serializers.CharField(help_text="This node's durable consumer.")
    reachable = serializers.BooleanField(help_text="The server answered this request.")
    error = serializers.CharField(help_text="Why it did not (never a credential or value).")
    lag = serializers.IntegerField(
        allow_null=True, help_text="Stream messages after this node's acknowledged floor."
    )
    pending = serializers.IntegerField(allow_null=True, help_text="Not yet delivered here.")
    ack_pending = serializers.IntegerField(
        allow_null=True, help_text="Delivered here, not acknowledged (not committed yet)."
    )
    stream_first_seq = serializers.IntegerField(
        allow_null=True, help_text="Oldest sequence the stream still holds (retention)."
    )
    stream_last_seq = serializers.IntegerField(allow_null=True)
    ack_floor_seq = serializers.IntegerField(allow_null=True)
    max_age_seconds = serializers.FloatField(help_text="Retention by age; 0: none.")
    max_msgs = serializers.IntegerField(help_text="Retention by count; 0: none.")
    snapshot_covers = serializers.IntegerField(allow_null=True)
    snapshot_taken_at = serializers.DateTimeField(allow_null=True)
    snapshot_writer = serializers.CharField()


class SyncStatusSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    deployment_mode = serializers.CharField()
    sync_interval_seconds = serializers.IntegerField()
    last_seq = serializers.IntegerField(help_text="Latest sequence number of our change feed.")
    open_conflicts = serializers.IntegerField()
    unreadable_records = serializers.IntegerField(
        help_text="Records held as ciphertext of a key this node lacks (stored and relayed)."
    )
    open_quarantined = serializers.IntegerField(
        help_text="Received changes this node could not store, kept aside and retried."
    )
    clock = ClockStatusSerializer()
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="What needs attention, one sentence each (clock first); empty when all is well.",
    )
    peers = PeerStatusSerializer(many=True)
    nats = NatsLagSerializer(
        help_text="The NATS JetStream transport's consumer lag, asked of the server now "
        "(configured false: CONFIGSYNC_NATS_URL is not set)."
    )


class SyncTriggerInputSerializer(serializers.Serializer):
    peer = serializers.CharField(
        required=False, help_text="Sync only this peer (by name); every enabled peer otherwise."
    )


_component = inline_serializer(
    name="HealthComponent",
    fields={
        "ok": serializers.BooleanField(),
        "error": serializers.CharField(
            required=False, help_text="The failure's exception class (never a URL or host)."
        ),
        "age_seconds": serializers.FloatField(
            required=False,
            allow_null=True,
            help_text="worker and beat: seconds since the heartbeat; null when never seen.",
        ),
        "max_age_seconds": serializers.IntegerField(
            required=False,
            help_text="worker and beat: the age beyond which the heartbeat is stale (two "
            "heartbeat intervals: CONFIGSYNC_SYNC_INTERVAL_SECONDS, at most 60 s).",
        ),
    },
)


class HealthView(APIView):
    """``GET /api/v1/health``: 200 when database, cache and broker answer, 503 otherwise.

    The clock out of bounds, or a worker or beat heartbeat older than two intervals (or never
    seen), makes it ``degraded`` (still 200) and, with ``?strict=1``, 503: what a load balancer
    or orchestrator polls to take out or restart a node that no longer replicates.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(
        responses={
            200: inline_serializer(
                name="Health",
                fields={
                    "status": serializers.ChoiceField(choices=["ok", "degraded", "error"]),
                    "components": serializers.DictField(child=_component),
                },
            ),
            503: None,
        },
        parameters=[
            OpenApiParameter(
                "strict",
                bool,
                required=False,
                description=(
                    "Answer 503 also when this node's clock is out of bounds, or when the "
                    "worker's or beat's heartbeat is older than two intervals (or missing)."
                ),
            )
        ],
        auth=[],
    )
    def get(self, request: Request) -> Response:
        strict = str(request.query_params.get("strict", "")).lower() in {"1", "true", "yes"}
        report = health_check(strict=strict)
        code = (
            status.HTTP_503_SERVICE_UNAVAILABLE
            if report["status"] == "error"
            else status.HTTP_200_OK
        )
        return Response(report, status=code)


class SyncStatusView(APIView):
    """``GET /api/v1/sync/status``: this node and, per peer, how replication is going."""

    @extend_schema(responses=SyncStatusSerializer)
    def get(self, request: Request) -> Response:
        data = sync_status(node=node_id()).as_dict()
        data["nats"] = nats_status().as_dict()
        return Response(SyncStatusSerializer(data).data)


class SyncTriggerView(APIView):
    """``POST /api/v1/sync/trigger``: enqueue a cycle now; 202 with the peers enqueued."""

    @extend_schema(
        request=SyncTriggerInputSerializer,
        responses={
            202: inline_serializer(
                name="SyncTriggered",
                fields={
                    "enqueued": serializers.ListField(
                        child=inline_serializer(
                            name="SyncTriggeredPeer",
                            fields={
                                "id": serializers.IntegerField(),
                                "name": serializers.CharField(),
                            },
                        )
                    )
                },
            ),
            404: None,
        },
    )
    def post(self, request: Request) -> Response:
        data = SyncTriggerInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            peers = sync_trigger(peer_name=data.validated_data.get("peer"))
        except UnknownPeerError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        return Response(
            {"enqueued": [{"id": peer.pk, "name": peer.name} for peer in peers]},
            status=status.HTTP_202_ACCEPTED,
        )
