"""Django admin: this node's deployment mode (switch it at run time) and its strategy matrix.

The model's list has one row, so it opens the mode page directly: the current (effective) mode in
a banner, the strategy matrix it implies, a choice of mode and a "Switch mode" button. The switch
goes through ``deployment_mode_set`` (which validates, logs and audits it) and says what happened
in a message: switched, unchanged, or refused with the reason.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from configsync.conf import DEPLOYMENT_MODES
from configsync.models import NodeIdentity
from configsync.replication.selectors.mode import deployment_mode, mode_problems
from configsync.replication.selectors.strategies import sync_strategies
from configsync.replication.services.mode import deployment_mode_set


class DeploymentModeForm(forms.ModelForm):
    deployment_mode = forms.ChoiceField(
        label="deployment mode",
        required=False,
        choices=[("", "from the settings (CONFIGSYNC_DEPLOYMENT_MODE)")]
        + [(mode, mode) for mode in DEPLOYMENT_MODES],
        help_text="Stored on this node only, never replicated; workers and beat follow it at "
        "their next cycle.",
    )

    class Meta:
        model = NodeIdentity
        fields = ["deployment_mode"]


@admin.register(NodeIdentity)
class NodeIdentityAdmin(admin.ModelAdmin):
    """One row: the node id (read-only) and the mode, written by ``deployment_mode_set``."""

    form = DeploymentModeForm
    change_form_template = "admin/configsync/nodeidentity/change_form.html"
    list_display = ("node_id", "stored_mode", "effective_mode")
    readonly_fields = ("node_id", "effective_mode", "matrix")
    fields = ("node_id", "deployment_mode", "effective_mode", "matrix")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="stored mode")
    def stored_mode(self, obj: NodeIdentity) -> str:
        return obj.deployment_mode or "(settings)"

    @admin.display(description="effective mode")
    def effective_mode(self, obj: NodeIdentity) -> str:
        problems = mode_problems()
        return deployment_mode() + (f" — WARNING: {'; '.join(problems)}" if problems else "")

    @admin.display(description="strategy matrix")
    def matrix(self, obj: NodeIdentity) -> str:
        rows = sync_strategies()["strategies"]
        return format_html(
            "<table><tr><th>data type</th><th>sync</th><th>strategy</th><th>directions</th>"
            "<th>interval (s)</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        name,
                        "on" if row["sync_enabled"] else "off",
                        row["strategy"],
                        ", ".join(row["directions"]) or "none",
                        row["interval_seconds"],
                    )
                    for name, row in rows.items()
                ),
            ),
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        """Straight to the mode page: there is one row."""
        row = NodeIdentity.objects.order_by("pk").first()
        if row is not None and self.has_view_or_change_permission(request, row):
            return HttpResponseRedirect(
                reverse("admin:configsync_nodeidentity_change", args=[row.pk])
            )
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {
            **(extra_context or {}),
            "title": "Deployment mode",
            "current_mode": deployment_mode(),
            "mode_problems": mode_problems(),
            "modes": DEPLOYMENT_MODES,
        }
        return super().change_view(request, object_id, form_url, context)

    def save_model(self, request: HttpRequest, obj: NodeIdentity, form: Any, change: bool) -> None:
        before = deployment_mode()
        try:
            deployment_mode_set(
                mode=form.cleaned_data.get("deployment_mode", ""),
                actor=f"user:{request.user.get_username()}",
            )
        except ValidationError as exc:  # the form's choices refuse it first
            self.message_user(request, "; ".join(exc.messages), level="error")
            return
        after = deployment_mode()
        if after == before:
            self.message_user(request, f"The deployment mode stays {after}.")
        else:
            self.message_user(request, f"Deployment mode switched from {before} to {after}.")

    def response_change(self, request: HttpRequest, obj: NodeIdentity) -> HttpResponse:
        """Back to the mode page with the message of ``save_model`` only."""
        return HttpResponseRedirect(request.path)
