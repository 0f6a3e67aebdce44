"""Django admin for system settings and API keys. Thin: forms validate, services write.

A sensitive value never reaches the HTML (see ``configsync.forms``); the change list shows
whether a value is set, never the secret; history and delete pages name records by key only.

Reveals: the services refuse a write that would reveal or redirect a stored secret unless told the
caller holds the reveal right (``allow_reveal``); the admin passes it for users who hold it
(``configsync.api.permissions.user_can_reveal``), and the forms refuse such a change for users who
do not. Making a sensitive setting plain while keeping its value asks for confirmation on a page of
its own first (``make_plain_confirmation.html``) and is audited as a reveal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.debug import sensitive_variables
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from configsync.api.permissions import user_can_reveal
from configsync.forms import CONFIRM_MAKE_PLAIN, SystemConfigAdminForm, makes_secret_plain
from configsync.models import AuditEvent, ServiceAPIKey, SystemConfig
from configsync.models.api_key import GRANT_REVEAL_PERMISSION
from configsync.replication.admin.display import moment_ms
from configsync.replication.admin.history import RecordVersionsAdminMixin, auth_admin_register
from configsync.schema import Declaration, declaration_get, declarations
from configsync.selectors.audit import audit_events_export
from configsync.services.api_keys import (
    api_key_create,
    api_key_delete,
    api_key_revoke,
    api_key_update,
)
from configsync.services.audit import audit_value_check
from configsync.services.system_config import system_config_delete, system_config_set


def may_grant_reveal(user: Any) -> bool:
    """Whether ``user`` may give an API key the reveal scope: a user holding the reveal right
    (``user_can_reveal``) and the ``grant_reveal_serviceapikey`` permission (superusers hold
    every permission). A key outlives its maker's session and staff status, hence a permission
    of its own rather than the reveal right alone."""
    return user_can_reveal(user) and bool(user.has_perm(GRANT_REVEAL_PERMISSION))


class ServiceAPIKeyForm(forms.ModelForm):
    """The API key's admin form: a new key's expiry, when set, is in the future."""

    class Meta:
        model = ServiceAPIKey
        fields = ("name", "can_write", "can_reveal", "expiry_date", "revoked")

    def clean_expiry_date(self) -> Any:
        expiry = self.cleaned_data.get("expiry_date")
        if self.instance._state.adding and expiry is not None and expiry <= timezone.now():
            raise forms.ValidationError("The expiry is in the past.")
        return expiry


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
class SystemConfigAdmin(RecordVersionsAdminMixin, ServiceWriteAdmin):
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

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        decision = getattr(form, "sensitivity_decision", None)
        if decision is not None:  # the add page: say which secret rule applied
            messages.info(request, f"{obj.key} is stored {decision.describe()}.")

    # --- declared settings (configsync.schema) ----------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/reset/",
                self.admin_site.admin_view(self.reset_view),
                name="{}_{}_reset".format(*info),
            ),
            *super().get_urls(),
        ]

    @staticmethod
    def shown_default(declaration: Declaration) -> str:
        """The declared default as the admin shows it (never a sensitive one)."""
        if not declaration.has_default:
            return "no default"
        if declaration.sensitive:
            return "set (sensitive)"
        try:
            text = declaration.default_text()
        except ValidationError:
            return "invalid (see configsync.E050)"
        return text if len(text) <= 80 else text[:77] + "..."

    def declared_unset(self, request: HttpRequest) -> list[dict[str, Any]]:
        """The declared settings that have no stored value yet, each with its "set" link."""
        declared = declarations()
        stored = set(
            SystemConfig.objects.filter(key__in=list(declared)).values_list("key", flat=True)
        )
        can_add = self.has_add_permission(request)
        add_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_add")
        return [
            {
                "key": key,
                "value_type": declaration.value_type,
                "category": declaration.category,
                "default": self.shown_default(declaration),
                "help_text": declaration.help_text,
                "set_url": f"{add_url}?{urlencode({'key': key})}" if can_add else "",
            }
            for key, declaration in declared.items()
            if key not in stored
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        context = {**(extra_context or {}), "declared_unset": self.declared_unset(request)}
        return super().changelist_view(request, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and self._resettable(request, obj) is not None:
            context["reset_url"] = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_reset",
                args=[quote(obj.pk)],
            )
        return super().change_view(request, object_id, form_url, context)

    def _resettable(self, request: HttpRequest, obj: SystemConfig) -> Declaration | None:
        """The declaration of ``obj`` when it has a default and the user may delete ``obj``."""
        declaration = declaration_get(obj.key)
        if declaration is None or not declaration.has_default:
            return None
        return declaration if self.has_delete_permission(request, obj) else None

    def reset_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """ "Reset to default": a confirmation page (GET), then the stored value is deleted (POST)
        so the declared default is served again everywhere."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No setting with id {object_id}")
        declaration = self._resettable(request, obj)
        if declaration is None:
            raise PermissionDenied
        if request.method == "POST":
            self.log_deletions(request, SystemConfig.objects.filter(pk=obj.pk))
            system_config_delete(key=obj.key)
            messages.success(request, f"{obj.key} was reset: its declared default is served again.")
            return HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reset {obj.key} to its default?",
            "object": obj,
            "opts": self.opts,
            "default": self.shown_default(declaration),
        }
        return TemplateResponse(
            request, "admin/configsync/systemconfig/reset_confirmation.html", context
        )

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


@admin.register(ServiceAPIKey)
class ServiceAPIKeyAdmin(APIKeyModelAdmin):
    """API keys, the same records as the CLI's ``apikey`` (the ones authentication checks).

    The add page creates the key through ``api_key_create`` and shows it once, in the success
    message (``<code class="configsync-api-key">``); only its hash is stored. Name, scopes and
    expiry stay editable; revoking is final and makes the key's page read-only. Giving a key the
    reveal scope needs the reveal right and the ``grant_reveal_serviceapikey`` permission
    (superusers hold it): for anyone else the box is read-only.
    """

    model = ServiceAPIKey
    form = ServiceAPIKeyForm
    list_display: Any = (
        "prefix",
        "name",
        "shown_scopes",
        "created",
        "expiry_date",
        "_has_expired",
        "revoked",
    )
    list_filter = ("revoked", "can_write", "can_reveal", "created")  # type: ignore[assignment]
    ordering = ("-created",)
    actions = ("revoke_selected",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["name", "can_write", "can_reveal", "expiry_date"]
        return ["name", "prefix", "can_write", "can_reveal", "expiry_date", "revoked", "created"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fixed: tuple[str, ...] = ("prefix", "created")
        if obj is not None and obj.revoked:
            fixed += ("name", "can_write", "can_reveal", "expiry_date", "revoked")
        elif not may_grant_reveal(request.user):
            fixed += ("can_reveal",)
        return fixed

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A revoked key cannot change any more: its page is a view page.
        if obj is not None and obj.revoked:
            return False
        return super().has_change_permission(request, obj)

    @method_decorator(sensitive_variables("key"))
    def save_model(
        self, request: HttpRequest, obj: Any, form: Any = None, change: bool = False
    ) -> None:
        # ``can_reveal`` is not in the form of a user who may not grant it: the instance then
        # holds the stored value (or the default, False, on the add page).
        can_reveal = obj.can_reveal if may_grant_reveal(request.user) else None
        if not change:
            record, key = api_key_create(
                name=obj.name,
                can_write=obj.can_write,
                can_reveal=bool(can_reveal),
                expiry_date=obj.expiry_date,
            )
            adopt_saved(obj, record)
            messages.success(
                request,
                format_html(
                    "The API key for “{}” is "
                    '<code class="configsync-api-key">{}</code> (send it as '
                    "<code>Authorization: Api-Key &lt;key&gt;</code>). Store it now: it is "
                    "shown only this once.",
                    record.name,
                    key,
                ),
            )
            return
        stored = ServiceAPIKey.objects.get(pk=obj.pk)
        adopt_saved(
            obj,
            api_key_update(
                prefix=stored.prefix,
                name=obj.name,
                can_write=obj.can_write,
                can_reveal=stored.can_reveal if can_reveal is None else can_reveal,
                expiry_date=obj.expiry_date,
                revoked=obj.revoked,
            ),
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        api_key_delete(prefix=obj.prefix)  # audited (delete_key)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for prefix in queryset.values_list("prefix", flat=True):
            api_key_delete(prefix=prefix)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        keys = list(queryset.filter(revoked=False))
        for key in keys:
            api_key_revoke(prefix=key.prefix)
            self.log_change(request, key, "Revoked.")  # the admin's history names who did it
        prefixes = [key.prefix for key in keys]
        self.message_user(request, f"Revoked {len(prefixes)} API key(s).", messages.SUCCESS)

    @admin.display(description="scopes")
    def shown_scopes(self, obj: ServiceAPIKey) -> str:
        return ", ".join(obj.scopes)


# The package's own model is not the one authentication checks: a key made on its page would
# never work. (Importing ``rest_framework_api_key.admin`` above registered it.)
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


import configsync.replication.admin.mode  # noqa: E402  (the deployment mode)
import configsync.replication.admin.quarantine  # noqa: E402  (quarantined changes)
import configsync.replication.admin.records  # noqa: E402, F401  (peers, conflicts, sync runs)


class AuditValueCheckForm(forms.Form):
    """The admin's "was it this value?" form: a hashed field of the event and the candidate,
    typed in a password box that is never filled back."""

    field = forms.ChoiceField(label="field", help_text="The sensitive field to compare.")
    value = forms.CharField(
        label="value",
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Compared in memory with the keyed hash; never stored or shown.",
    )

    def __init__(self, *args: Any, fields: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.field_names = fields
        self.fields["field"].choices = [(name, name) for name in fields]  # type: ignore[attr-defined]


def shortened_hash(stored: str) -> str:
    """A keyed value hash as the admin shows it: its key id and first 12 hex digits
    (``hmac1:k1:3fa2c9d01b7e…``), enough to compare two events by eye."""
    prefix, _, rest = stored.partition(":")
    kid, _, digest = rest.partition(":")
    if not digest:
        return stored[:40]
    return f"{prefix}:{kid}:{digest[:12]}…"


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail, read-only: who changed or revealed what, through which entry point, on
    which node and when; filters, search on actor and key, and an export of the selected events
    as JSON lines (``configsync.selectors.audit.AUDIT_EXPORT_FIELDS``, the CLI's ``--jsonl``).

    Append-only for everyone, superusers included: no add, change or delete (no "delete
    selected" either); the trail is written only by the services, in the transaction of what it
    records. Seen by users with the view permission on audit events (superusers). Values never
    appear: sensitive fields are shown as their keyed hash, shortened.
    """

    list_display = (
        "shown_when",
        "actor",
        "via",
        "action",
        "shown_record",
        "node_id",
        "shown_changed",
        "shown_hashes",
    )
    list_filter = ("action", "via", "model_label", "node_id", "created_at")
    search_fields = ("actor", "natural_key")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    list_per_page = 100
    actions = ("export_jsonl",)
    fields = (
        "shown_when",
        "actor",
        "via",
        "action",
        "model_label",
        "natural_key",
        "node_id",
        "origin_node",
        "hlc",
        "shown_changed",
        "shown_hashes",
        "details",
        "shown_check",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="when (UTC)", ordering="created_at")
    def shown_when(self, obj: AuditEvent) -> str:
        return moment_ms(obj.created_at)

    @admin.display(description="record", ordering="natural_key")
    def shown_record(self, obj: AuditEvent) -> str:
        return f"{obj.model_label}: {obj.natural_key}" if obj.model_label else "—"

    @admin.display(description="changed fields")
    def shown_changed(self, obj: AuditEvent) -> str:
        return ", ".join(obj.changed_fields or []) or "—"

    @admin.display(description="value hashes")
    def shown_hashes(self, obj: AuditEvent) -> str:
        hashes = obj.value_hashes or {}
        return ", ".join(f"{f}: {shortened_hash(str(h))}" for f, h in sorted(hashes.items())) or "—"

    @admin.display(description="was it this value?")
    def shown_check(self, obj: AuditEvent) -> str:
        if not obj.value_hashes:
            return "—"
        link = reverse("admin:configsync_auditevent_check_value", args=[obj.pk])
        return format_html('<a href="{}" class="button">Compare a value…</a>', link)

    def get_urls(self) -> list[URLPattern]:
        check = self.admin_site.admin_view(self.check_value_view)
        return [
            path("<path:object_id>/check-value/", check, name="configsync_auditevent_check_value"),
            *super().get_urls(),
        ]

    @method_decorator(sensitive_variables("value"))
    def check_value_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Was it this value? A form comparing a typed value with the event's keyed hash
        (``audit_value_check``, which audits the question). Needs the view permission and the
        reveal right, as an answer can confirm a guessed secret; the value is never rendered."""
        event = self.get_object(request, unquote(object_id))
        if event is None:
            raise Http404("No such audit event.")
        if not (self.has_view_permission(request, event) and user_can_reveal(request.user)):
            raise PermissionDenied
        form = AuditValueCheckForm(request.POST or None, fields=sorted(event.value_hashes or {}))
        answer = field = ""
        if request.method == "POST" and form.is_valid():
            field = form.cleaned_data["field"]
            value = form.cleaned_data["value"]
            answer = {True: "yes", False: "no", None: "unknown"}[
                audit_value_check(event_id=event.pk, field=field, value=value)
            ]
            form = AuditValueCheckForm(initial={"field": field}, fields=form.field_names)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": event,
            "form": form,
            "answer": answer,
            "field": field,
            "title": "Was it this value?",
        }
        return TemplateResponse(request, "admin/configsync/auditevent/check_value.html", context)

    @admin.action(description="Export selected as JSON lines", permissions=["view"])
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[Any]) -> StreamingHttpResponse:
        # Streamed, read in chunks: "select all" over a long trail stays small in memory.
        lines = (
            json.dumps(row, separators=(",", ":")) + "\n" for row in audit_events_export(queryset)
        )
        stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.jsonl"'
        return response


auth_admin_register()  # Django's users and groups replicate: their admins get "Versions" too
