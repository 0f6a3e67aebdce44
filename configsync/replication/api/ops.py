"""Operator endpoints under ``/api/v1/sync/``: conflicts, resolving one, sync strategies.

They use the project's default authentication and scopes (admin session or API key; resolving
needs the write scope). Thin: they validate and call services/selectors; values never leave.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from configsync.api.permissions import request_has_scope
from configsync.models import Conflict
from configsync.replication.errors import ConflictResolveError
from configsync.replication.selectors.conflicts import conflicts_list
from configsync.replication.selectors.strategies import sync_strategies
from configsync.replication.services.conflicts import conflict_resolve


class VersionSummarySerializer(serializers.Serializer):
    hlc = serializers.CharField()
    origin = serializers.CharField()
    deleted = serializers.BooleanField()


class ConflictSerializer(serializers.ModelSerializer):
    """A conflict without any value: versions are summarized, changed fields named."""

    model = serializers.CharField(source="model_label")
    key = serializers.CharField(source="natural_key")
    local = serializers.SerializerMethodField()
    remote = serializers.SerializerMethodField()
    changed_fields = serializers.SerializerMethodField()

    class Meta:
        model = Conflict
        fields = [
            "id",
            "model",
            "key",
            "source",
            "status",
            "winner",
            "resolution",
            "detected_at",
            "resolved_at",
            "skew_affected",
            "local",
            "remote",
            "changed_fields",
        ]
        extra_kwargs = {
            "skew_affected": {
                "help_text": (
                    "The source's clock was measured off by more than "
                    "CONFIGSYNC_SKEW_WARNING_SECONDS and by at least the gap between the two "
                    "versions: the losing version may really be the later write."
                )
            }
        }

    @extend_schema_field(VersionSummarySerializer)
    def get_local(self, obj: Conflict) -> dict[str, Any]:
        return obj.local.summary()

    @extend_schema_field(VersionSummarySerializer)
    def get_remote(self, obj: Conflict) -> dict[str, Any]:
        return obj.remote.summary()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_changed_fields(self, obj: Conflict) -> list[str]:
        return obj.changed_fields()


class ResolveSerializer(serializers.Serializer):
    choice = serializers.ChoiceField(choices=Conflict.Winner.choices)


class ConflictListView(APIView):
    """Conflicts kept on this node (values never shown)."""

    @extend_schema(
        operation_id="sync_conflicts_list",
        parameters=[
            OpenApiParameter("status", str, enum=["open", "resolved"], required=False),
        ],
        responses={200: ConflictSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        wanted = request.query_params.get("status") or None
        if wanted not in (None, "open", "resolved"):
            return Response(
                {"detail": "status must be open or resolved"}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(ConflictSerializer(conflicts_list(status=wanted), many=True).data)


class ConflictResolveView(APIView):
    """Resolve a conflict by writing the chosen version as a new change that replicates."""

    @extend_schema(
        operation_id="sync_conflicts_resolve",
        request=ResolveSerializer,
        responses={200: ConflictSerializer, 400: None, 404: None, 409: None},
    )
    def post(self, request: Request, pk: int) -> Response:
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        get_object_or_404(Conflict, pk=pk)
        try:
            conflict = conflict_resolve(
                conflict_id=pk,
                choice=body.validated_data["choice"],
                allow_reveal=request_has_scope(request, "reveal"),
            )
        except ConflictResolveError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(ConflictSerializer(conflict).data)


class StrategiesView(APIView):
    """How each data type is synced under the deployment mode."""

    @extend_schema(
        operation_id="sync_strategies",
        responses={
            200: inline_serializer(
                "SyncStrategies",
                {
                    "mode": serializers.CharField(),
                    "source": serializers.CharField(),
                    "transports": serializers.ListField(child=serializers.CharField()),
                    "peers": serializers.ListField(child=serializers.DictField()),
                    "problems": serializers.ListField(child=serializers.CharField()),
                    "strategies": serializers.DictField(child=serializers.DictField()),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        return Response(sync_strategies())
