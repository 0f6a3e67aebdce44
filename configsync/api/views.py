"""Views of the config API. Thin: serializers validate shapes, services write, selectors read.

A system setting created (or written with a value) without ``is_sensitive`` is judged by the one
secret rule (``configsync.sensitivity``); write responses carry ``sensitivity_rule``.
Records are addressed by natural key. Every detail response carries an ``ETag``; writes honour
``If-Match`` (412 when stale, see ``configsync.api.concurrency``). ``?reveal=true`` needs the
reveal scope and writes one ``AuditEvent`` per revealed record before the response is returned.
A retrieve without reveal is served from the lookup cache (``configsync.lookup``): the masked body
and the ETag of the record as last loaded, dropped in every process when any record of the model
changes (see ``NaturalKeyConfigViewSet.retrieve``).
A write that would reveal or redirect a stored secret (making a sensitive setting plain, a
provider's URL or kind) is passed ``allow_reveal`` only with the reveal scope; without it the
service refuses (``RevealRequired``: 403 with the reason, nothing changed).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterable
from typing import Any, ClassVar

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models, transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from configsync.api.concurrency import check_if_match
from configsync.api.permissions import (
    HasScope,
    missing_scope_message,
    request_actor,
    request_has_scope,
)
from configsync.api.serializers import (
    SystemConfigSerializer,
    SystemConfigUpdateSerializer,
    django_error_detail,
)
from configsync.exceptions import ConfigKeyError
from configsync.logging import register_secret
from configsync.lookup import MISSING, lookup_cache
from configsync.models import SystemConfig
from configsync.replication.api.history import RecordHistoryMixin, history_schema
from configsync.selectors.system_config import system_config_get, system_config_list
from configsync.sensitivity import NO_RULE
from configsync.services.audit import audit_reveals
from configsync.services.system_config import (
    EXISTING,
    system_config_delete,
    system_config_sensitivity,
    system_config_set,
)
from configsync.versioning import record_etag

REVEAL_PARAMETER = OpenApiParameter(
    "reveal",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description="Return sensitive values in plaintext (needs the reveal scope; audited).",
)
IF_MATCH_PARAMETER = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="ETag from a previous response; 412 when the record has changed since. Optional.",
)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


ERRORS: dict[int, OpenApiResponse] = {
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(
        ErrorSerializer,
        description="Authenticated without the needed scope, or a write that would reveal or "
        "redirect a stored secret without the reveal scope (nothing changed).",
    ),
    429: OpenApiResponse(ErrorSerializer, description="Throttled."),
}
TOO_LARGE = OpenApiResponse(ErrorSerializer, description="Request body too large.")
VALIDATION_ERROR = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Invalid input: field -> messages, or detail (e.g. text no database can store "
    "in the path, query or headers; a body nested too deep). Nothing was saved.",
)
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No record with this key.")
PRECONDITION_FAILED = OpenApiResponse(
    ErrorSerializer, description="If-Match does not match the current ETag."
)


def natural_key_schema(
    *,
    tag: str,
    serializer: type[serializers.Serializer],
    update_serializer: type[serializers.Serializer],
    list_parameters: Iterable[OpenApiParameter] = (),
    update_description: str | None = None,
) -> Callable[[type], type]:
    """The OpenAPI description shared by every ``NaturalKeyConfigViewSet`` subclass."""
    write_responses = {
        200: serializer,
        400: VALIDATION_ERROR,
        404: NOT_FOUND,
        412: PRECONDITION_FAILED,
        413: TOO_LARGE,
        **ERRORS,
    }
    return extend_schema_view(
        list=extend_schema(
            tags=[tag],
            parameters=[REVEAL_PARAMETER, *list_parameters],
            responses={200: serializer(many=True), 400: VALIDATION_ERROR, **ERRORS},
        ),
        create=extend_schema(
            tags=[tag],
            request=serializer,
            responses={201: serializer, 400: VALIDATION_ERROR, 413: TOO_LARGE, **ERRORS},
        ),
        retrieve=extend_schema(
            tags=[tag],
            parameters=[REVEAL_PARAMETER],
            responses={200: serializer, 400: VALIDATION_ERROR, 404: NOT_FOUND, **ERRORS},
        ),
        update=extend_schema(
            tags=[tag],
            parameters=[IF_MATCH_PARAMETER],
            request=update_serializer,
            responses=write_responses,
            description=update_description,
        ),
        partial_update=extend_schema(
            tags=[tag],
            parameters=[IF_MATCH_PARAMETER],
            request=update_serializer,
            responses=write_responses,
        ),
        destroy=extend_schema(
            tags=[tag],
            parameters=[IF_MATCH_PARAMETER],
            responses={
                204: None,
                400: VALIDATION_ERROR,
                404: NOT_FOUND,
                412: PRECONDITION_FAILED,
                **ERRORS,
            },
        ),
    )


class RevealQuerySerializer(serializers.Serializer):
    reveal = serializers.BooleanField(required=False, default=False)


_MUTABLE = (dict, list)


def _found(entry: Any) -> bool:
    return entry is not MISSING


class NaturalKeyConfigViewSet(viewsets.GenericViewSet):
    """List, create, retrieve, update and delete records of ``model`` by natural key.

    Subclasses bind the model's selectors and services through the hooks below. With
    ``cache_namespace`` set, a retrieve without reveal is answered from the lookup cache; the
    model must then invalidate it (``configsync.lookup.invalidate_on_change``), and its masked
    representation must depend on its own row only.
    """

    permission_classes = [HasScope]
    write_context: dict[str, Any] = {}
    cache_namespace: ClassVar[str | None] = None
    model: ClassVar[type[models.Model]]
    serializer_class: type[serializers.Serializer]
    update_serializer_class: ClassVar[type[serializers.Serializer]]

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action in ("update", "partial_update"):
            return self.update_serializer_class
        return self.serializer_class

    # --- hooks ---------------------------------------------------------------------------
    def records(self, request: Request) -> Iterable[Any]:
        raise NotImplementedError

    def record_get(self, key: str) -> Any:
        raise NotImplementedError

    def record_save(self, key: str, data: dict[str, Any], instance: Any | None) -> Any:
        raise NotImplementedError

    def record_delete(self, key: str) -> None:
        raise NotImplementedError

    def is_secret_set(self, instance: Any) -> bool:
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------------------
    def wants_reveal(self, request: Request) -> bool:
        if "reveal" not in request.query_params:
            return False  # what the serializer below says, without building it
        query = RevealQuerySerializer(data=request.query_params)
        if not query.is_valid():
            raise ValidationError({"reveal": "Use true or false."})
        reveal = bool(query.validated_data["reveal"])
        if reveal and not request_has_scope(request, "reveal"):
            raise PermissionDenied(missing_scope_message("reveal"))
        return reveal

    def audited_reveal(self, request: Request, instances: Iterable[Any]) -> None:
        """Audit the reveal of every record in ``instances`` that holds a secret.

        Called after the body was rendered (so a value that cannot be decrypted is no reveal) and
        before it is returned (so a reveal that cannot be audited does not happen).
        """
        audit_reveals(
            actor=request_actor(request),
            instances=[instance for instance in instances if self.is_secret_set(instance)],
        )

    def get_object_or_404(self, key: str) -> Any:
        self.check_key(key)
        try:
            return self.record_get(key)
        except ConfigKeyError:
            raise NotFound("No record with this key.") from None

    def get_object(self) -> Any:
        """The addressed record (DRF's hook; its OPTIONS metadata asks for it), 404 if none."""
        return self.get_object_or_404(self.kwargs[self.lookup_field])

    def render(
        self, request: Request, instance: Any, *, reveal: bool = False, code: int = 200
    ) -> Response:
        context = {"reveal": reveal, **getattr(self, "write_context", {})}
        body = self.get_serializer_class()(instance, context=context).data
        if reveal:
            self.audited_reveal(request, [instance])
        return Response(body, status=code, headers={"ETag": record_etag(instance)})

    def save(self, key: str, data: dict[str, Any], instance: Any | None) -> Any:
        try:
            return self.record_save(key, data, instance)
        except DjangoValidationError as exc:
            raise ValidationError(django_error_detail(exc)) from None

    def check_key(self, key: str) -> None:
        """404 for a key no record can have (e.g. a NUL byte, which PostgreSQL cannot compare)."""
        if "\x00" in key or len(key) > 255:
            raise NotFound("No record with this key.")

    def locked_write(self, request: Request, key: str, write: Callable[[Any], Any]) -> Any:
        """Run ``write(current)`` with the record locked after checking ``If-Match``."""
        self.check_key(key)
        with transaction.atomic():
            try:
                current = self.model._default_manager.select_for_update().get(
                    **{self.model.natural_key_field: key}  # type: ignore[attr-defined]
                )
            except ObjectDoesNotExist:
                raise NotFound("No record with this key.") from None
            check_if_match(request, current)
            return write(current)

    # --- actions -------------------------------------------------------------------------
    def list(self, request: Request) -> Response:
        reveal = self.wants_reveal(request)
        instances = list(self.records(request))
        serializer = self.get_serializer_class()(instances, many=True, context={"reveal": reveal})
        body = serializer.data
        if reveal:
            self.audited_reveal(request, instances)
        return Response(body)

    def create(self, request: Request) -> Response:
        """Create only: an existing key (even one created concurrently) is a 400, never updated."""
        serializer = self.get_serializer_class()(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        key = data.pop(self.model.natural_key_field)  # type: ignore[attr-defined]
        instance = self.save(key, data, None)
        return self.render(request, instance, code=status.HTTP_201_CREATED)

    def masked_entry(self, key: Hashable) -> tuple[dict[str, Any], str] | Any:
        """The masked body and ETag of record ``key`` as loaded now, or ``MISSING``."""
        try:
            instance = self.record_get(str(key))
        except ConfigKeyError:
            return MISSING
        body = self.serializer_class(instance, context={"reveal": False}).data
        return dict(body), record_etag(instance)

    def retrieve(self, request: Request, **kwargs: str) -> Response:
        """The record, masked unless revealed. Without reveal and with ``cache_namespace``, from
        the lookup cache: the masked body holds no secret by construction; a reveal always reads
        the row, decrypts and audits. A missing key is not cached (any reader could fill memory
        with keys of their choosing): a 404 costs a query."""
        reveal = self.wants_reveal(request)
        key = kwargs[self.lookup_field]
        if reveal or self.cache_namespace is None:
            return self.render(request, self.get_object_or_404(key), reveal=reveal)
        self.check_key(key)
        entry = lookup_cache.get(self.cache_namespace, key, self.masked_entry, keep=_found)
        if entry is MISSING:
            raise NotFound("No record with this key.")
        body, etag = entry
        # A copy, so nothing downstream can alter the cached body (nested JSON values included).
        data = {k: copy.deepcopy(v) if v.__class__ in _MUTABLE else v for k, v in body.items()}
        return Response(data, headers={"ETag": etag})

    def _update(self, request: Request, key: str, *, partial: bool) -> Response:
        def write(current: Any) -> Any:
            serializer = self.update_serializer_class(current, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            return self.save(key, dict(serializer.validated_data), current)

        return self.render(request, self.locked_write(request, key, write))

    def update(self, request: Request, **kwargs: str) -> Response:
        return self._update(request, kwargs[self.lookup_field], partial=False)

    def partial_update(self, request: Request, **kwargs: str) -> Response:
        return self._update(request, kwargs[self.lookup_field], partial=True)

    def destroy(self, request: Request, **kwargs: str) -> Response:
        key = kwargs[self.lookup_field]

        def write(current: Any) -> None:
            try:
                self.record_delete(key)
            except ConfigKeyError:
                raise NotFound("No record with this key.") from None

        self.locked_write(request, key, write)
        return Response(status=status.HTTP_204_NO_CONTENT)


@natural_key_schema(
    tag="system settings",
    serializer=SystemConfigSerializer,
    update_serializer=SystemConfigUpdateSerializer,
    list_parameters=[
        OpenApiParameter("category", OpenApiTypes.STR, description="Only this category."),
    ],
    update_description="Update the value and any given attributes; omitted attributes are kept.",
)
@history_schema(tag="system settings")
class SystemConfigViewSet(RecordHistoryMixin, NaturalKeyConfigViewSet):
    """System settings by key: typed values, sensitive ones masked unless revealed; their kept
    versions (``history/``) and rollback (``rollback/``)."""

    model = SystemConfig
    history_label = "configsync.systemconfig"
    cache_namespace = "api:system"
    serializer_class = SystemConfigSerializer
    update_serializer_class = SystemConfigUpdateSerializer
    lookup_field = "key"
    lookup_value_regex = r"[^/]+"

    def records(self, request: Request) -> Iterable[SystemConfig]:
        category = request.query_params.get("category")
        return system_config_list(category=category or None)

    def record_get(self, key: str) -> SystemConfig:
        return system_config_get(key=key)

    def record_save(
        self, key: str, data: dict[str, Any], instance: SystemConfig | None
    ) -> SystemConfig:
        # An omitted value is kept by the service as stored (a secret is not decrypted for it).
        optional = {"value": data["value"]} if "value" in data else {}
        # The one secret rule decides when the request does not (on create, or with a value).
        is_sensitive = data.get("is_sensitive")
        if instance is None or "value" in data or is_sensitive is not None:
            decision = system_config_sensitivity(key=key, explicit=is_sensitive, **optional)
            is_sensitive, rule = decision.sensitive, decision.rule
            if decision.sensitive and isinstance(data.get("value"), str):
                register_secret(data["value"])
        else:
            rule = EXISTING if instance.is_sensitive else NO_RULE
        self.write_context = {"sensitivity_rule": rule}
        return system_config_set(
            key=key,
            value_type=data.get("value_type"),
            is_sensitive=is_sensitive,
            category=data.get("category"),
            description=data.get("description"),
            create_only=instance is None,
            allow_reveal=request_has_scope(self.request, "reveal"),
            actor=request_actor(self.request),
            **optional,
        )

    def record_delete(self, key: str) -> None:
        system_config_delete(key=key)

    def is_secret_set(self, instance: SystemConfig) -> bool:
        return instance.is_sensitive and instance.has_value
