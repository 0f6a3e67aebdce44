"""The admin's "Versions" of every replicated record, and "Roll back to this".

:class:`RecordVersionsAdminMixin` gives a replicated model's admin:

* a "Versions" button among the change page's object tools;
* ``versions/<key>/``: a table of the kept versions (``RecordVersion``), newest first, with time,
  actor, entry point, origin node and, per version, what changed against the previous one:
  before → after for plain fields, ``********`` and "value changed"/"same value" for secrets
  (``configsync.replication.selectors.history``); never a secret;
* ``versions/<key>/rollback/<number>/``: a confirmation page (GET) and the rollback (POST, CSRF)
  through ``configsync.replication.services.rollback.record_rollback``, then a success message
  (or the reason it was refused) back on the versions page.

Why "Versions" beside Django's own "History" rather than replacing ``history_view``: Django's
history lists the admin's ``LogEntry`` rows, i.e. what was done *in this admin on this node*;
ours lists every version of the record whatever wrote it (API, CLI, a peer, the ``.env`` bridge)
and is what a rollback restores. Both answer different questions, and keeping Django's view
keeps its permissions and URLs as every Django user knows them.

The pages are keyed by the natural key (quoted like the admin quotes primary keys), not the
primary key, so a deleted record's versions stay reachable and rolling back to a delete and then
back to an earlier version works from the same page. Viewing needs the view (or change)
permission; rolling back the change permission, plus add when the record does not exist and
delete when the version is a delete; a version that would show a value kept secret now needs
the reveal right (``user_can_reveal``), as making a setting plain does.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import select_template
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from configsync.api.permissions import user_can_reveal
from configsync.crypto.errors import ConfigsyncError
from configsync.replication import registry
from configsync.replication.selectors.history import (
    VersionView,
    record_history,
)
from configsync.replication.services.rollback import record_rollback

VERSIONS_TEMPLATE = "admin/configsync/record_versions.html"
ROLLBACK_TEMPLATE = "admin/configsync/record_rollback_confirmation.html"
CHANGE_FORM_TEMPLATE = "admin/configsync/record_versions_change_form.html"


class RecordVersionsAdminMixin(admin.ModelAdmin):
    """Put first in the bases of a replicated model's ``ModelAdmin`` (see the module docstring)."""

    change_form_template = CHANGE_FORM_TEMPLATE

    @property
    def history_label(self) -> str:
        return str(self.model._meta.label_lower)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "versions/<path:key>/rollback/<int:number>/",
                self.admin_site.admin_view(self.rollback_view),
                name="{}_{}_rollback".format(*info),
            ),
            path(
                "versions/<path:key>/",
                self.admin_site.admin_view(self.versions_view),
                name="{}_{}_versions".format(*info),
            ),
            *super().get_urls(),
        ]

    def versions_url(self, key: str) -> str:
        info = self.opts.app_label, self.opts.model_name
        return reverse(
            "admin:{}_{}_versions".format(*info),
            kwargs={"key": quote(key)},
            current_app=self.admin_site.name,
        )

    def rollback_url(self, key: str, number: int) -> str:
        info = self.opts.app_label, self.opts.model_name
        return reverse(
            "admin:{}_{}_rollback".format(*info),
            kwargs={"key": quote(key), "number": number},
            current_app=self.admin_site.name,
        )

    def _object(self, key: str) -> Any:
        rm = registry.get(self.history_label)
        return self.model._default_manager.filter(**{rm.natural_key_field: key}).first()

    # --- the change page's button --------------------------------------------------------
    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        opts = self.opts
        # The template the page would have used without the mixin: the model's own first.
        context["versions_parent_template"] = select_template(
            [
                f"admin/{opts.app_label}/{opts.model_name}/change_form.html",
                f"admin/{opts.app_label}/change_form.html",
                "admin/change_form.html",
            ]
        )
        if obj is not None and not add:
            context["versions_url"] = self.versions_url(
                registry.get(self.history_label).natural_key(obj)
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- the versions page ---------------------------------------------------------------
    def versions_view(self, request: HttpRequest, key: str) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        key = unquote(key)
        views = record_history(model_label=self.history_label, natural_key=key)
        obj = self._object(key)
        may_roll_back = self.has_change_permission(request)
        rows = [
            {
                "view": view,
                "rollback_url": self.rollback_url(key, view.number)
                if may_roll_back and not view.current
                else "",
            }
            for view in views
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Versions of {key}",
            "key": key,
            "object": obj,
            "change_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=[quote(obj.pk)],
                current_app=self.admin_site.name,
            )
            if obj is not None
            else "",
            "rows": rows,
        }
        return TemplateResponse(request, VERSIONS_TEMPLATE, context)

    # --- rollback ------------------------------------------------------------------------
    def rollback_view(self, request: HttpRequest, key: str, number: int) -> HttpResponse:
        key = unquote(key)
        obj = self._object(key)
        views = {
            v.number: v for v in record_history(model_label=self.history_label, natural_key=key)
        }
        target: VersionView | None = views.get(number)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        if target is not None and target.deleted and not self.has_delete_permission(request, obj):
            raise PermissionDenied
        restores = obj is None and target is not None and not target.deleted
        if restores and not self.has_add_permission(request):
            raise PermissionDenied
        back = HttpResponseRedirect(self.versions_url(key))
        if target is None:
            messages.error(request, f"{key} has no kept version {number}; nothing was changed.")
            return back
        if request.method == "POST":
            try:
                record_rollback(
                    model_label=self.history_label,
                    natural_key=key,
                    number=number,
                    allow_reveal=user_can_reveal(request.user),
                )
            except (ConfigsyncError, PermissionDenied) as exc:
                messages.error(request, f"Not rolled back: {exc}")
                return back
            messages.success(
                request,
                f"{key} was rolled back to version {number}. The rollback is a new change: it "
                "replicates to every node and wins there.",
            )
            return back
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Roll back {key} to version {number}?",
            "key": key,
            "target": target,
            "versions_url": self.versions_url(key),
        }
        return TemplateResponse(request, ROLLBACK_TEMPLATE, context)


# Django's users and groups replicate (configsync.replication.auth): their admins get the
# versions too. Re-registered with the mixin in front of Django's own admin classes.
class VersionedUserAdmin(RecordVersionsAdminMixin, UserAdmin):  # type: ignore[type-arg]
    """Django's ``UserAdmin`` with "Versions" (a password stays ``********``)."""


class VersionedGroupAdmin(RecordVersionsAdminMixin, GroupAdmin):
    """Django's ``GroupAdmin`` with "Versions"."""


def auth_admin_register(site: admin.AdminSite = admin.site) -> None:
    """Replace the user and group admins of ``site`` by the versioned ones (idempotent)."""
    pairs: list[tuple[Any, type[admin.ModelAdmin]]] = [
        (get_user_model(), VersionedUserAdmin),
        (Group, VersionedGroupAdmin),
    ]
    for model, model_admin in pairs:
        if site.is_registered(model):
            if isinstance(site._registry[model], RecordVersionsAdminMixin):
                continue
            site.unregister(model)
        site.register(model, model_admin)
