"""REST views of AI providers at ``/api/v1/configs/ai-providers/`` (by name), and test-connection.

Same behaviour as the system settings API (``configsync.api.views``): the API key is write-only,
read back masked unless revealed with the reveal scope (audited), ETag/If-Match on writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from configsync.api.permissions import HasScope, request_has_scope
from configsync.api.views import (
    ERRORS,
    NOT_FOUND,
    VALIDATION_ERROR,
    NaturalKeyConfigViewSet,
    natural_key_schema,
)
from configsync.replication.api.history import RecordHistoryMixin, history_schema
from providers.client import provider_test_connection
from providers.models import AIProviderConfig
from providers.registry import OPTION_FIELDS
from providers.selectors import ai_provider_get, ai_provider_list
from providers.serializers import (
    AIProviderSerializer,
    AIProviderUpdateSerializer,
    ConnectionTestSerializer,
)
from providers.services import ai_provider_delete, ai_provider_set


class WriteScope(HasScope):
    """Write scope whatever the method."""

    scope = "write"


@natural_key_schema(
    tag="AI providers",
    serializer=AIProviderSerializer,
    update_serializer=AIProviderUpdateSerializer,
    update_description=(
        "Replace the provider's settings: kind is required; omitted fields and an omitted "
        "or null api_key are kept."
    ),
)
@history_schema(tag="AI providers")
class AIProviderViewSet(RecordHistoryMixin, NaturalKeyConfigViewSet):
    """AI provider accounts by name: credentials masked unless revealed; their kept versions
    (``history/``) and rollback (``rollback/``)."""

    model = AIProviderConfig
    history_label = "providers.aiproviderconfig"
    cache_namespace = "api:provider"
    serializer_class = AIProviderSerializer
    update_serializer_class = AIProviderUpdateSerializer
    lookup_field = "name"
    lookup_value_regex = r"[^/]+"

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "test_connection":
            return ConnectionTestSerializer
        return super().get_serializer_class()

    def records(self, request: Request) -> Iterable[AIProviderConfig]:
        return ai_provider_list()

    def record_get(self, key: str) -> AIProviderConfig:
        return ai_provider_get(name=key)

    def record_save(
        self, key: str, data: dict[str, Any], instance: AIProviderConfig | None
    ) -> AIProviderConfig:
        if instance is not None and self.action == "update" and "kind" not in data:
            raise ValidationError({"kind": "Required by PUT (PATCH may omit it)."})
        options = {name: data[name] for name in OPTION_FIELDS if name in data}
        return ai_provider_set(
            name=key,
            kind=data.get("kind"),
            enabled=data.get("enabled"),
            is_default=data.get("is_default"),
            create_only=instance is None,
            allow_reveal=request_has_scope(self.request, "reveal"),
            **options,
        )

    def record_delete(self, key: str) -> None:
        ai_provider_delete(name=key)

    def is_secret_set(self, instance: AIProviderConfig) -> bool:
        return instance.has_api_key

    @extend_schema(
        tags=["AI providers"],
        request=None,
        responses={200: ConnectionTestSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND, **ERRORS},
        description=(
            "Call the provider's model-list endpoint with a short timeout and report success or "
            "the reason (never the key). Needs the write scope."
        ),
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="test-connection",
        permission_classes=[WriteScope],
    )
    def test_connection(self, request: Request, **kwargs: str) -> Response:
        name = kwargs[self.lookup_field]
        self.get_object_or_404(name)
        result = provider_test_connection(name=name)
        body = ConnectionTestSerializer(
            {"ok": result.ok, "detail": result.detail, "status_code": result.status_code}
        ).data
        return Response(body)
