"""Django admin for AI providers. Thin: the form validates, ``providers.services`` writes.

The API key is write-only (see ``providers.forms``): pages show whether one is set, never it.
"""

from __future__ import annotations

from django.contrib import admin

from configsync.admin import ServiceWriteAdmin
from providers.client import admin_test_connection
from providers.forms import AIProviderConfigAdminForm
from providers.models import AIProviderConfig
from providers.services import ai_provider_delete, ai_provider_set


@admin.register(AIProviderConfig)
class AIProviderConfigAdmin(ServiceWriteAdmin):
    form = AIProviderConfigAdminForm
    set_service = staticmethod(ai_provider_set)
    delete_service = staticmethod(ai_provider_delete)
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
    secret_displays = {"api_key": "api_key_status"}
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled", "is_default", "version")}),
        ("Credentials and defaults", {"fields": ("api_key", "base_url", "default_model")}),
        ("OpenAI", {"fields": ("organization",)}),
        ("Azure OpenAI", {"fields": ("endpoint", "api_version", "deployment")}),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description="API key")
    def api_key_status(self, obj: AIProviderConfig) -> str:
        return "set" if obj.has_api_key else "not set"
