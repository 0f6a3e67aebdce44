"""Change-form data for the admin, as a browser would post it for a record."""

from __future__ import annotations

from typing import Any

from configsync.models import SystemConfig
from configsync.versioning import record_etag
from providers.models import AIProviderConfig


def setting_form(record: SystemConfig, **changes: Any) -> dict[str, Any]:
    """The change form of ``record`` (value left blank: kept); ``None`` drops a field."""
    data = {
        "value_type": record.value_type,
        "value": "",
        "category": record.category,
        "description": record.description,
        "version": record_etag(record),
    }
    if record.is_sensitive:
        data["is_sensitive"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def provider_form(record: AIProviderConfig, **changes: Any) -> dict[str, Any]:
    """The change form of ``record`` (key left blank: kept); ``None`` drops a field."""
    data: dict[str, Any] = {
        "name": record.name,  # read-only on the admin's change page; the bare form needs it
        "kind": record.kind,
        "api_key": "",
        "base_url": record.base_url,
        "default_model": record.default_model,
        "organization": record.organization,
        "endpoint": record.endpoint,
        "api_version": record.api_version,
        "deployment": record.deployment,
        "version": record_etag(record),
    }
    if record.enabled:
        data["enabled"] = "on"
    if record.is_default:
        data["is_default"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}
