"""Django admin for system settings. Thin: forms validate, services write.

A sensitive value never reaches the HTML (see ``configsync.forms``); the change list shows
whether a value is set, never the secret; history and delete pages name records by key only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from configsync.forms import SystemConfigAdminForm
from configsync.models import SystemConfig
from configsync.services.system_config import system_config_delete, system_config_set


def adopt_saved(obj: models.Model, saved: models.Model) -> None:
    """Make the admin's in-memory ``obj`` the record the service saved (pk, stored fields)."""
    obj.__dict__.update(saved.__dict__)


class ServiceWriteAdmin(admin.ModelAdmin):
    """An admin that writes only through the model's services.

    Subclasses set ``set_service`` (called with the form's ``service_arguments()``) and
    ``delete_service`` (called with the natural key), both as ``staticmethod``. The natural key is
    read-only once the record exists: it is the record's identity on every node and part of its
    encryption context.
    """

    set_service: Callable[..., models.Model]
    delete_service: Callable[..., None]

    @property
    def natural_key_field(self) -> str:
        return str(self.model.natural_key_field)  # type: ignore[attr-defined]

    def get_readonly_fields(
        self, request: HttpRequest, obj: models.Model | None = None
    ) -> tuple[str, ...]:
        fixed = ("created_at", "updated_at")
        return (self.natural_key_field, *fixed) if obj is not None else fixed

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        adopt_saved(obj, self.set_service(**form.service_arguments()))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_service(**{self.natural_key_field: getattr(obj, self.natural_key_field)})

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for key in queryset.values_list(self.natural_key_field, flat=True):
            self.delete_service(**{self.natural_key_field: key})


@admin.register(SystemConfig)
class SystemConfigAdmin(ServiceWriteAdmin):
    form = SystemConfigAdminForm
    set_service = staticmethod(system_config_set)
    delete_service = staticmethod(system_config_delete)
    list_display = ("key", "value_type", "category", "is_sensitive", "shown_value", "updated_at")
    list_filter = ("category", "is_sensitive", "value_type")
    search_fields = ("key", "description", "category")
    ordering = ("key",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "key",
                    "value_type",
                    "value",
                    "is_sensitive",
                    "category",
                    "description",
                    "version",
                )
            },
        ),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description="value")
    def shown_value(self, obj: SystemConfig) -> str:
        if obj.is_sensitive:
            return "set" if obj.has_value else "not set"
        return obj.value if len(obj.value) <= 80 else obj.value[:77] + "..."


import configsync.admin_quarantine  # noqa: E402  (quarantined changes)
import configsync.admin_replication  # noqa: E402, F401  (peers, conflicts, sync runs)
