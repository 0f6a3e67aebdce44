"""``GET .../{key}/history/`` and ``POST .../{key}/rollback/`` on every natural-key config API
(system settings, AI providers): a mixin for their viewsets, its serializers and its schema.

History needs the read scope and never shows a secret, with or without ``?reveal=true`` (the
reveal scope reveals the *current* value on the record's own endpoint, audited; old secrets stay
``********`` with ``changed``/``same``): a history of plaintexts would multiply what one reveal
shows, and an old secret is usually one that was rotated out for a reason. Rollback needs the
write scope and takes ``{"version": N}``; the rolled-back version is written as a new change
that replicates and wins (``configsync.replication.services.rollback``). A rollback that would
show a value the history masks (a setting that is sensitive now, back to a plain version) needs
the reveal scope too (403 otherwise, nothing written).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from configsync.api.permissions import request_has_scope
from configsync.models import RecordVersion
from configsync.replication.selectors.history import (
    history_model,
    record_history,
    record_versions,
)
from configsync.replication.services.rollback import RollbackError, record_rollback


class FieldChangeSerializer(serializers.Serializer):
    """One field that differs from the previous kept version."""

    field = serializers.CharField(help_text="The wire field's name.")
    sensitive = serializers.BooleanField(help_text="A secret: before/after are masked.")
    before = serializers.JSONField(allow_null=True, help_text="Previous value, or ********.")
    after = serializers.JSONField(allow_null=True, help_text="This version's value, or ********.")
    status = serializers.ChoiceField(
        choices=["changed", "same", "unknown"],
        help_text="For a secret: whether the value itself changed (decided by keyed hashes).",
    )


class RecordVersionSerializer(serializers.Serializer):
    """One kept version of a record (``VersionView.as_dict``); secrets are ********."""

    model = serializers.CharField(help_text="Replicated model, app_label.modelname.")
    key = serializers.CharField(help_text="The record's natural key.")
    version = serializers.IntegerField(help_text="Version number on this node, from 1.")
    current = serializers.BooleanField(help_text="The record's current version.")
    hlc = serializers.CharField(help_text="Hybrid logical clock of the version.")
    time = serializers.CharField(help_text="Wall time of the version, UTC, to the millisecond.")
    recorded_at = serializers.DateTimeField(help_text="When this node stored it.")
    actor = serializers.CharField(help_text="Who made the change (user:, api-key:, cli:, peer:).")
    via = serializers.CharField(help_text="The entry point (admin, api, cli, peer, rollback...).")
    origin_node = serializers.CharField(help_text="Node that made the version.")
    deleted = serializers.BooleanField(help_text="The version is a delete.")
    values = serializers.DictField(
        child=serializers.JSONField(allow_null=True),
        help_text="Field -> value (******** for a secret); empty for a delete.",
    )
    sensitive_fields = serializers.ListField(
        child=serializers.CharField(), help_text="Fields shown masked."
    )
    changes = FieldChangeSerializer(
        many=True,
        allow_null=True,
        help_text="Changes against the previous version; null when that one is no longer kept.",
    )


class RecordHistorySerializer(serializers.Serializer):
    model = serializers.CharField(help_text="Replicated model, app_label.modelname.")
    key = serializers.CharField(help_text="The record's natural key.")
    versions = RecordVersionSerializer(many=True, help_text="Kept versions, newest first.")


class RollbackRequestSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="The kept version to write again."
    )


class RollbackResultSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="Replicated model, app_label.modelname.")
    key = serializers.CharField(help_text="The record's natural key.")
    rolled_back_to = serializers.IntegerField(help_text="The version written again.")
    version = serializers.IntegerField(help_text="The record's new (current) version number.")
    hlc = serializers.CharField(help_text="HLC of the new version (it replicates and wins).")
    deleted = serializers.BooleanField(help_text="The version written is a delete.")


class _Detail(serializers.Serializer):
    detail = serializers.CharField()


def history_schema(*, tag: str) -> Callable[[type], type]:
    """The OpenAPI description of the two actions, under the viewset's ``tag``."""
    return extend_schema_view(
        history=extend_schema(
            tags=[tag],
            summary="Kept versions of the record, newest first (secrets always masked).",
            responses={
                200: RecordHistorySerializer,
                400: OpenApiResponse(_Detail, description="Invalid input."),
                401: OpenApiResponse(_Detail, description="Not authenticated."),
                403: OpenApiResponse(_Detail, description="Needs the read scope."),
                404: OpenApiResponse(_Detail, description="No record with this key."),
                429: OpenApiResponse(_Detail, description="Throttled."),
            },
        ),
        rollback=extend_schema(
            tags=[tag],
            summary="Write a kept version again as a new change that replicates and wins.",
            request=RollbackRequestSerializer,
            responses={
                200: RollbackResultSerializer,
                400: OpenApiResponse(
                    OpenApiTypes.OBJECT,
                    description="No such kept version, a version that no longer validates or "
                    "whose secret this node cannot decrypt, or a malformed body. Nothing written.",
                ),
                401: OpenApiResponse(_Detail, description="Not authenticated."),
                403: OpenApiResponse(
                    _Detail,
                    description="Needs the write scope (and the reveal scope for a version that "
                    "would show a value kept secret now). Nothing written.",
                ),
                404: OpenApiResponse(_Detail, description="No record with this key."),
                413: OpenApiResponse(_Detail, description="Request body too large."),
                429: OpenApiResponse(_Detail, description="Throttled."),
            },
        ),
    )


class RecordHistoryMixin:
    """Adds ``history`` (GET, read scope) and ``rollback`` (POST, write scope) by natural key to a
    ``configsync.api.views.NaturalKeyConfigViewSet``; ``history_label`` names its model."""

    history_label: ClassVar[str]
    lookup_field: str
    check_key: Callable[[str], None]

    def _versions_or_404(self, key: str) -> list[RecordVersion]:
        """The kept versions; 404 when there are none and no such record (a record older than
        the history, never changed since, has an empty history)."""
        self.check_key(key)
        versions = record_versions(model_label=self.history_label, natural_key=key)
        if not versions:
            rm = history_model(self.history_label)
            if not rm.model._default_manager.filter(**{rm.natural_key_field: key}).exists():
                raise NotFound("No record with this key.")
        return versions

    @action(detail=True, methods=["get"], url_path="history")
    def history(self, request: Request, **kwargs: str) -> Response:
        key = kwargs[self.lookup_field]
        self._versions_or_404(key)
        views = record_history(model_label=self.history_label, natural_key=key)
        return Response(
            {
                "model": self.history_label,
                "key": key,
                "versions": [view.as_dict() for view in views],
            }
        )

    @action(detail=True, methods=["post"], url_path="rollback")
    def rollback(self, request: Request, **kwargs: str) -> Response:
        key = kwargs[self.lookup_field]
        self._versions_or_404(key)
        body = RollbackRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        number = int(body.validated_data["version"])
        try:
            record = record_rollback(
                model_label=self.history_label,
                natural_key=key,
                number=number,
                allow_reveal=request_has_scope(request, "reveal"),
            )
        except RollbackError as exc:
            raise ValidationError({"version": [str(exc)]}) from None
        newest = record_versions(model_label=self.history_label, natural_key=key)[0]
        data: dict[str, Any] = {
            "model": self.history_label,
            "key": key,
            "rolled_back_to": number,
            "version": newest.number,
            "hlc": record.hlc,
            "deleted": record.deleted,
        }
        return Response(data)
