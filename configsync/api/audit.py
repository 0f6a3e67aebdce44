"""``GET /api/v1/audit/``: the audit trail, read-only, in the export format.

Who may read it: callers holding the **reveal** scope — staff users' sessions and API keys made
with ``can_reveal`` — not every read key. The trail holds no value, but it tells who did what
to which record and when (user names, API key names, peers, when secrets were revealed and by
whom): that is for the people trusted with the secrets themselves, not for every service
reading settings. Nothing writes the trail over the API.

Query parameters filter as ``configsync audit`` does (``since``, ``action``, ``via``, ``actor``,
``model``, ``key``, ``node``); events come newest first, ``limit`` at a time (100 by default, at
most 1000); ``next`` is the URL of the following page (``before=<the last id>``) or ``null``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from configsync import actor as acting
from configsync.api.permissions import HasScope
from configsync.models import AuditEvent
from configsync.selectors.audit import SINCE_HELP, audit_event_export, audit_events

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class HasRevealScope(HasScope):
    """The reveal scope whatever the method."""

    scope = "reveal"


class AuditEventSerializer(serializers.Serializer):
    """An event in the export format (``configsync.selectors.audit.AUDIT_EXPORT_FIELDS``)."""

    id = serializers.IntegerField()
    at = serializers.DateTimeField(help_text="When, UTC, ISO 8601 with microseconds.")
    actor = serializers.CharField(help_text="user:…, api-key:… (prefix), cli:…, peer:…, system.")
    via = serializers.ChoiceField(choices=list(acting.VIAS))
    action = serializers.ChoiceField(choices=AuditEvent.Action.choices)
    model = serializers.CharField(help_text="The record's model label; empty: node-wide.")
    key = serializers.CharField(help_text="The record's key or name.")
    node = serializers.CharField(help_text="The node that recorded the event.")
    origin_node = serializers.CharField()
    hlc = serializers.CharField()
    changed_fields = serializers.ListField(child=serializers.CharField())
    value_hashes = serializers.DictField(
        child=serializers.CharField(),
        help_text="Per sensitive field, a keyed hash (hmac1:<key id>:<hex>), never a value.",
    )
    details = serializers.DictField()


class AuditQuerySerializer(serializers.Serializer):
    since = serializers.CharField(required=False, help_text=f"Events from then on: {SINCE_HELP}.")
    action = serializers.CharField(required=False)
    via = serializers.CharField(required=False)
    actor = serializers.CharField(required=False, max_length=200)
    model = serializers.CharField(required=False, max_length=100)
    key = serializers.CharField(required=False, max_length=255)
    node = serializers.CharField(required=False, max_length=64)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT)
    before = serializers.IntegerField(required=False, min_value=1)


class AuditEventListView(APIView):
    """The audit trail, newest first (reveal scope)."""

    permission_classes = [HasRevealScope]

    @extend_schema(
        operation_id="audit_list",
        parameters=[
            OpenApiParameter("since", str, required=False, description=SINCE_HELP),
            OpenApiParameter("action", str, enum=AuditEvent.Action.values, required=False),
            OpenApiParameter("via", str, enum=list(acting.VIAS), required=False),
            OpenApiParameter("actor", str, required=False, description="Part of the actor."),
            OpenApiParameter("model", str, required=False, description="A model label."),
            OpenApiParameter("key", str, required=False, description="A record's natural key."),
            OpenApiParameter("node", str, required=False, description="The recording node."),
            OpenApiParameter("limit", int, required=False, description="1–1000 (default 100)."),
            OpenApiParameter("before", int, required=False, description="Events before this id."),
        ],
        responses={
            200: inline_serializer(
                "AuditEventPage",
                {
                    "results": AuditEventSerializer(many=True),
                    "next": serializers.CharField(allow_null=True),
                },
            ),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="A parameter that does not validate: field -> messages (e.g. limit "
                "out of range), or detail (a filter the trail cannot apply).",
            ),
            401: None,
            403: None,
        },
    )
    def get(self, request: Request) -> Response:
        query = AuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted: dict[str, Any] = dict(query.validated_data)
        limit = wanted.pop("limit", DEFAULT_LIMIT)
        before = wanted.pop("before", None)
        try:
            events = audit_events(**wanted)
        except ValidationError as exc:
            reasons = "; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items())
            return Response({"detail": reasons}, status=status.HTTP_400_BAD_REQUEST)
        if before is not None:
            events = events.filter(pk__lt=before)
        page = list(events.order_by("-id")[: limit + 1])
        more = len(page) > limit
        page = page[:limit]
        following = None
        if more:
            params = request.query_params.copy()
            params["before"] = str(page[-1].pk)
            following = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response(
            {"results": [audit_event_export(event) for event in page], "next": following}
        )
