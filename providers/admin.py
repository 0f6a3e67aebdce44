"""Django admin for AI providers. Thin: the form validates, ``providers.services`` writes.

The API key is write-only (see ``configsync.forms``): pages show whether one is set, never it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from configsync.admin import adopt_saved
from configsync.forms import AIProviderConfigAdminForm
from providers.client import admin_test_connection
from providers.models import AIProviderConfig
from providers.services import ai_provider_delete, ai_provider_set


@admin.register(AIProviderConfig)
class AIProviderConfigAdmin(admin.ModelAdmin):
    form = AIProviderConfigAdminForm
    list_display = (
        "name",
        "kind",
        "enabled",
        "is_default",
        "api_key_status",
        "default_model",
        "updated_at",
    )
    list_filter = ("kind", "enabled", "is_default")
    search_fields = ("name", "default_model")
    ordering = ("name",)
    actions = [admin_test_connection]
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled", "is_default", "version")}),
        ("Credentials and defaults", {"fields": ("api_key", "base_url", "default_model")}),
        ("OpenAI", {"fields": ("organization",)}),
        ("Azure OpenAI", {"fields": ("endpoint", "api_version", "deployment")}),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_readonly_fields(
        self, request: HttpRequest, obj: AIProviderConfig | None = None
    ) -> tuple[str, ...]:
        # The name is the record's identity on every node and part of its encryption context.
        fixed = ("created_at", "updated_at")
        return ("name", *fixed) if obj is not None else fixed

    @admin.display(description="API key")
    def api_key_status(self, obj: AIProviderConfig) -> str:
        return "set" if obj.has_api_key else "not set"

    def save_model(
        self, request: HttpRequest, obj: AIProviderConfig, form: Any, change: bool
    ) -> None:
        adopt_saved(obj, ai_provider_set(**form.service_arguments()))

    def delete_model(self, request: HttpRequest, obj: AIProviderConfig) -> None:
        ai_provider_delete(name=obj.name)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AIProviderConfig]) -> None:
        for name in queryset.values_list("name", flat=True):
            ai_provider_delete(name=name)
