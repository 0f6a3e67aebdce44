"""Django admin for system settings. Thin: forms validate, services write.

A sensitive value never reaches the HTML (see ``configsync.forms``); the change list shows
whether a value is set, never the secret; history and delete pages name records by key only.

Reveals: the services refuse a write that would reveal or redirect a stored secret unless told the
caller holds the reveal right (``allow_reveal``); the admin passes it for users who hold it
(``configsync.api.permissions.user_can_reveal``), and the forms refuse such a change for users who
do not. Making a sensitive setting plain while keeping its value asks for confirmation on a page of
its own first (``make_plain_confirmation.html``) and is audited as a reveal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from configsync.api.permissions import user_can_reveal
from configsync.forms import CONFIRM_MAKE_PLAIN, SystemConfigAdminForm, makes_secret_plain
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
    secret_displays: ClassVar[dict[str, str]] = {}
    """Fields of the fieldsets that hold a secret, each mapped to the admin display shown in its
    place on a read-only page (a user with the view permission only): Django renders a read-only
    model field from the attribute, which decrypts it."""

    @property
    def natural_key_field(self) -> str:
        return str(self.model.natural_key_field)  # type: ignore[attr-defined]

    def get_readonly_fields(
        self, request: HttpRequest, obj: models.Model | None = None
    ) -> tuple[str, ...]:
        fixed = ("created_at", "updated_at", *self.secret_displays.values())
        return (self.natural_key_field, *fixed) if obj is not None else fixed

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        shown = self.secret_displays
        return [
            (
                title,
                {
                    **options,
                    "fields": [
                        shown.get(f, f) if isinstance(f, str) else f for f in options["fields"]
                    ],
                },
            )
            for title, options in fieldsets
        ]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        # The form refuses reveals without it (configsync.forms.VersionedModelForm.may_reveal).
        form.may_reveal = user_can_reveal(request.user)  # type: ignore[attr-defined]
        return form

    def service_options(self, request: HttpRequest) -> dict[str, Any]:
        """Extra keyword arguments of ``set_service``: the caller's reveal right."""
        return {"allow_reveal": user_can_reveal(request.user)}

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        adopt_saved(
            obj, self.set_service(**form.service_arguments(), **self.service_options(request))
        )

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

    def service_options(self, request: HttpRequest) -> dict[str, Any]:
        return {**super().service_options(request), "actor": f"user:{request.user.get_username()}"}

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Ask for confirmation before a submission makes a sensitive setting plain, keeping its
        value; the confirmation page posts the same fields again with ``CONFIRM_MAKE_PLAIN``."""
        if request.method == "POST" and object_id and CONFIRM_MAKE_PLAIN not in request.POST:
            obj = self.get_object(request, unquote(object_id))
            if (
                obj is not None
                and self.has_change_permission(request, obj)
                and user_can_reveal(request.user)
                and makes_secret_plain(obj, request.POST)
            ):
                return self.make_plain_confirmation(request, obj)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def make_plain_confirmation(self, request: HttpRequest, obj: SystemConfig) -> HttpResponse:
        # The submitted fields go back as hidden inputs; the value is not among them (a
        # submission that makes a secret plain while keeping it leaves the value blank).
        fields = [
            (name, item)
            for name, items in request.POST.lists()
            if name not in ("csrfmiddlewaretoken", "value")
            for item in items
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Make this setting plain?",
            "object": obj,
            "opts": self.model._meta,
            "fields": fields,
            "confirm_name": CONFIRM_MAKE_PLAIN,
        }
        return TemplateResponse(
            request, "admin/configsync/systemconfig/make_plain_confirmation.html", context
        )

    @admin.display(description="value")
    def shown_value(self, obj: SystemConfig) -> str:
        if obj.is_sensitive:
            return "set" if obj.has_value else "not set"
        return obj.value if len(obj.value) <= 80 else obj.value[:77] + "..."


import configsync.replication.admin.mode  # noqa: E402  (the deployment mode)
import configsync.replication.admin.quarantine  # noqa: E402  (quarantined changes)
import configsync.replication.admin.records  # noqa: E402, F401  (peers, conflicts, sync runs)
