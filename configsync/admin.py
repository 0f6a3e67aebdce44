"""Django admin for system settings. Thin: forms validate, services write.

A sensitive value never reaches the HTML (see ``configsync.forms``); the change list shows
whether a value is set, never the secret; history and delete pages name records by key only.
"""

from __future__ import annotations

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


@admin.register(SystemConfig)
class SystemConfigAdmin(admin.ModelAdmin):
    form = SystemConfigAdminForm
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

    def get_readonly_fields(
        self, request: HttpRequest, obj: SystemConfig | None = None
    ) -> tuple[str, ...]:
        # The key is the record's identity on every node and part of its encryption context.
        fixed = ("created_at", "updated_at")
        return ("key", *fixed) if obj is not None else fixed

    @admin.display(description="value")
    def shown_value(self, obj: SystemConfig) -> str:
        if obj.is_sensitive:
            return "set" if obj.has_value else "not set"
        return obj.value if len(obj.value) <= 80 else obj.value[:77] + "..."

    def save_model(self, request: HttpRequest, obj: SystemConfig, form: Any, change: bool) -> None:
        adopt_saved(obj, system_config_set(**form.service_arguments()))

    def delete_model(self, request: HttpRequest, obj: SystemConfig) -> None:
        system_config_delete(key=obj.key)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SystemConfig]) -> None:
        for key in queryset.values_list("key", flat=True):
            system_config_delete(key=key)


import configsync.admin_replication  # noqa: E402, F401  (peers, conflicts, sync runs)
