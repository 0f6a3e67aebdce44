"""What the OpenAPI schema says beyond drf-spectacular's defaults (``SPECTACULAR_SETTINGS``).

* :class:`AutoSchema`: a read-only field declared ``required=False`` is optional in responses
  (drf-spectacular marks every read-only field required; e.g. ``sensitivity_rule`` is in write
  responses only); strict serializers refuse unknown fields and require what their ``validate``
  requires (``schema_required``).
* :func:`postprocess`: every authenticated operation documents its 401 and 403 (the API answers
  them from the authentication and permission classes, before any view's own responses), every
  operation the 400/413/415/429 of the request edge where they apply (``_edge_errors``), and
  the links a client (or schemathesis' stateful run) follows from one operation to the next:
  create -> retrieve/update/delete/history/rollback by the natural key the 201 body holds (and
  the writes' ``If-Match`` by its ``ETag``), and
  a conflicts or quarantine list -> resolve, retry, drop by the first item's ``id``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import is_patched_serializer
from rest_framework import serializers

from configsync.api.serializers import RejectUnknownFieldsMixin

_METHODS = ("get", "put", "patch", "delete", "post")


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's ``AutoSchema``, saying what the serializers enforce beyond their fields:

    * a read-only field declared ``required=False`` is optional (in responses);
    * a serializer that refuses unknown fields (``RejectUnknownFieldsMixin``) has
      ``additionalProperties: false``;
    * the fields a serializer names in ``schema_required`` (required by its ``validate`` on a
      create or a PUT, never on a PATCH) are required.
    """

    def _map_basic_serializer(
        self, serializer: serializers.Serializer, direction: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if isinstance(serializer, RejectUnknownFieldsMixin):
            result["additionalProperties"] = False
        demanded = [
            name
            for name in getattr(serializer, "schema_required", ())
            if name in result.get("properties", {})
        ]
        if demanded and not is_patched_serializer(serializer, direction):
            result["required"] = sorted({*result.get("required", []), *demanded})
        optional = {
            name
            for name, field in serializer.fields.items()
            # DRF keeps the declared keyword arguments; ``required`` is False by default on a
            # read-only field, so only an explicit ``required=False`` is looked at.
            if field.read_only and getattr(field, "_kwargs", {}).get("required") is False
        }
        if optional and "required" in result:
            kept = [name for name in result["required"] if name not in optional]
            if kept:
                result["required"] = kept
            else:
                del result["required"]
        return result


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"detail": {"type": "string"}},
                    "required": ["detail"],
                }
            }
        },
    }


def _edge_errors(operation: dict[str, Any]) -> None:
    """What the request edge answers before a view's own responses: 400 for a body or query
    that does not validate (DRF's field -> messages, or ``detail``), 413 for a body over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``, 415 for a body DRF's parsers refuse (e.g. multipart without
    a boundary), 429 for a throttled API-key or session caller."""
    responses = operation.setdefault("responses", {})
    takes_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
    if operation.get("requestBody") or takes_query:
        responses.setdefault(
            "400",
            {
                "description": "Invalid input: field -> messages, or detail. Nothing changed.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        )
    if operation.get("requestBody"):
        responses.setdefault("413", _error_response("Request body too large."))
        responses.setdefault(
            "415", _error_response("A body in a media type the endpoint does not parse.")
        )
    if any("ApiKeyAuth" in requirement for requirement in operation.get("security", [])):
        responses.setdefault("429", _error_response("Throttled."))


def _auth_errors(operation: dict[str, Any]) -> None:
    if not operation.get("security"):
        return  # open (health): no authentication, no refusal
    responses = operation.setdefault("responses", {})
    responses.setdefault(
        "401",
        _error_response(
            "Not authenticated (or, for peers, a missing, stale or replayed signature)."
        ),
    )
    responses.setdefault(
        "403", _error_response("Authenticated without the needed scope (or a bad signature).")
    )


def _link(operation_id: str, parameter: str, expression: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": {parameter: expression}}


def _links(paths: dict[str, Any]) -> None:
    by_path = {path: ops for path, ops in paths.items()}
    for path, ops in by_path.items():
        create = ops.get("post")
        # A collection (``.../``) whose items live at ``.../{param}/``: link create to each item
        # operation by the natural key the 201 body names.
        if create and path.endswith("/") and "201" in create.get("responses", {}):
            for item_path, item_ops in by_path.items():
                rest = item_path[len(path) :] if item_path.startswith(path) else ""
                if not rest.startswith("{") or "}" not in rest:
                    continue
                parameter = rest[1 : rest.index("}")]
                links = create["responses"]["201"].setdefault("links", {})
                for method in _METHODS:
                    target = item_ops.get(method)
                    if target and "operationId" in target:
                        link = _link(
                            target["operationId"], parameter, f"$response.body#/{parameter}"
                        )
                        if any(
                            p.get("in") == "header" and p.get("name") == "If-Match"
                            for p in target.get("parameters", [])
                        ):
                            # A write after the create names the version it saw.
                            link["parameters"]["header.If-Match"] = "$response.header.ETag"
                        links[target["operationId"]] = link
        listing = ops.get("get")
        # A list of rows with integer ids (conflicts, quarantine) -> the row actions.
        if listing and path.endswith("/") and "{" not in path and not create:
            for item_path, item_ops in by_path.items():
                if not item_path.startswith(path + "{id}/"):
                    continue
                target = item_ops.get("post")
                if target and "operationId" in target:
                    links = listing["responses"]["200"].setdefault("links", {})
                    links[target["operationId"]] = _link(
                        target["operationId"], "id", "$response.body#/0/id"
                    )


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> Any:
    """drf-spectacular's postprocessing hook (after its own enum hook)."""
    paths = result.get("paths", {})
    for ops in paths.values():
        for method, operation in ops.items():
            if method in _METHODS:
                _auth_errors(operation)
                _edge_errors(operation)
    _links(paths)
    return result
