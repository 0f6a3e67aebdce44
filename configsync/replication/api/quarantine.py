"""Quarantined replicated changes under ``/api/v1/sync/quarantine/``. Thin: selectors and services.

Listing needs the read scope, retry and drop the write scope (the project's default
``HasScope``). Responses never hold a value: the payload is not shown at all.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from configsync.models import QuarantinedChange
from configsync.replication.selectors.quarantine import quarantine_list
from configsync.replication.services.quarantine import quarantine_drop, quarantine_retry


class QuarantinedChangeSerializer(serializers.ModelSerializer):
    """A quarantined change without its payload."""

    model = serializers.CharField(source="model_label")
    key = serializers.CharField(source="natural_key")

    class Meta:
        model = QuarantinedChange
        fields = [
            "id",
            "model",
            "key",
            "hlc",
            "source",
            "source_node",
            "reason",
            "status",
            "attempts",
            "received_at",
            "updated_at",
        ]


class RetryResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(
        help_text="applied, stale or conflict (no longer quarantined), or quarantined."
    )
    reason = serializers.CharField(help_text="Why it is still quarantined; empty otherwise.")


_STATUSES = [choice for choice, _ in QuarantinedChange.Status.choices]


class QuarantineListView(APIView):
    """Replicated changes this node could not store (values never shown)."""

    @extend_schema(
        operation_id="sync_quarantine_list",
        parameters=[
            OpenApiParameter(
                "status", str, enum=[*_STATUSES, "all"], required=False, description="open"
            )
        ],
        responses={200: QuarantinedChangeSerializer(many=True), 400: None},
    )
    def get(self, request: Request) -> Response:
        wanted = request.query_params.get("status") or QuarantinedChange.Status.OPEN
        if wanted not in [*_STATUSES, "all"]:
            return Response(
                {"detail": f"status must be one of {', '.join([*_STATUSES, 'all'])}"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        rows = quarantine_list(status=None if wanted == "all" else wanted)
        return Response(QuarantinedChangeSerializer(rows[:1000], many=True).data)


class QuarantineRetryView(APIView):
    """Apply a quarantined change again now (it is also retried automatically every cycle)."""

    @extend_schema(
        operation_id="sync_quarantine_retry",
        request=None,
        responses={200: RetryResultSerializer, 404: None},
    )
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(QuarantinedChange, pk=pk)
        (outcome,) = quarantine_retry(quarantine_id=pk)
        return Response(outcome.as_dict())


class QuarantineDropView(APIView):
    """Stop retrying a quarantined change (kept for the record)."""

    @extend_schema(
        operation_id="sync_quarantine_drop",
        request=None,
        responses={200: QuarantinedChangeSerializer, 404: None},
    )
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(QuarantinedChange, pk=pk)
        return Response(QuarantinedChangeSerializer(quarantine_drop(quarantine_id=pk)).data)
