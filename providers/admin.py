"""Django admin for AI providers. Thin: the form validates, ``providers.services`` writes.

The API key is write-only (see ``providers.forms``): pages show whether one is set, never it.
The change form shows only the selected kind's fields (``providers/kind_fields.js``) and has a
"Test connection" button: it posts to ``<pk>/test-connection/``, which tests the *saved* settings
with ``provider_test_connection`` (change permission needed), reports the result as a message and
returns to the form.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from configsync.admin import ServiceWriteAdmin
from configsync.replication.admin.history import RecordVersionsAdminMixin
from providers.client import admin_test_connection, provider_test_connection
from providers.forms import AIProviderConfigAdminForm
from providers.models import AIProviderConfig
from providers.services import ai_provider_delete, ai_provider_set


@admin.register(AIProviderConfig)
class AIProviderConfigAdmin(RecordVersionsAdminMixin, ServiceWriteAdmin):
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
        ("Connection", {"fields": ("connection_test",)}),
        ("Credentials and defaults", {"fields": ("api_key", "base_url", "default_model")}),
        ("OpenAI", {"fields": ("organization",)}),
        ("Azure OpenAI", {"fields": ("endpoint", "api_version", "deployment")}),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    class Media:
        js = ("providers/kind_fields.js",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*super().get_readonly_fields(request, obj), "connection_test")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing saved to test yet
            return [fs for fs in fieldsets if "connection_test" not in fs[1]["fields"]]
        return fieldsets

    @admin.display(description="Test connection")
    def connection_test(self, obj: AIProviderConfig) -> str:
        if obj.pk is None:
            return "Save the provider first."
        url = reverse("admin:providers_aiproviderconfig_test_connection", args=[obj.pk])
        return format_html(
            '<button type="submit" class="button" formaction="{}" formmethod="post" '
            'formnovalidate name="_test_connection">Test connection</button> '
            '<span class="help">Lists the provider\'s models with the saved settings '
            "(save your changes first).</span>",
            url,
        )

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="providers_aiproviderconfig_test_connection",
            )
        ]
        return extra + super().get_urls()

    def test_connection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: test the saved provider's connection, report it, go back to its change form."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = get_object_or_404(AIProviderConfig, pk=object_id)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        result = provider_test_connection(name=obj.name)
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, f"{obj.name}: {result.detail}", level)
        return HttpResponseRedirect(
            reverse("admin:providers_aiproviderconfig_change", args=[obj.pk])
        )

    @admin.display(description="API key")
    def api_key_status(self, obj: AIProviderConfig) -> str:
        return "set" if obj.has_api_key else "not set"
