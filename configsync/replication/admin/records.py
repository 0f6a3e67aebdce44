"""Django admin for replication: peers (editable), conflicts and sync runs (read-only).

* **Peers**: the list shows each peer's sync state (healthy / behind / failing / disabled, in
  colour and words; ``selectors.health``), not only whether it is enabled. The sync overview and
  "sync now" (``overview.py``) are served under the peer admin's URLs.
* **Sync runs**: the error's first line, start, finish and duration to the millisecond.
* **Conflicts**: the conflict page shows the two versions side by side: human times (from the
  HLC's wall clock), origin nodes and, per field, the values of non-secret fields. A secret
  (an encrypted or sensitive field) is never rendered, plaintext or ciphertext: it shows
  ``********`` and a "same value?" answer, computed in memory as the versions page does
  (``selectors.history.secret_status``: equal tokens, else both decrypted and compared).
  "Keep local" and "Use remote" (``POST <id>/resolve/``, CSRF-protected, for users who may
  change conflicts) call ``configsync.replication.services.conflicts.conflict_resolve``, like
  the list's actions (which need the same permission).
"""

from __future__ import annotations

import json
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from configsync.api.permissions import user_can_reveal
from configsync.logging import MASK
from configsync.models import Conflict, Peer, PeerCheckpoint, SyncRun
from configsync.replication import registry
from configsync.replication.admin.display import (
    duration_ms,
    error_summary,
    hlc_moment,
    moment_ms,
    state_badge,
)
from configsync.replication.admin.overview import sync_now_view, sync_overview_view
from configsync.replication.errors import ConflictResolveError
from configsync.replication.selectors.feed import clock_hlc_ms
from configsync.replication.selectors.health import peer_health_state
from configsync.replication.selectors.history import CHANGED, MASKED_WHEN, SAME, secret_status
from configsync.replication.selectors.status import (
    CLOCK_OK,
    CLOCK_OUT_OF_BOUNDS,
    PeerStatus,
    clock_status,
    peer_status,
    peer_statuses,
)
from configsync.replication.services.conflicts import conflict_resolve
from configsync.services.audit import RevealRequired


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PeerCheckpointInline(admin.TabularInline):
    model = PeerCheckpoint
    extra = 0
    fields = ("direction", "cursor", "session", "updated_at")
    readonly_fields = ("direction", "cursor", "session", "updated_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


_STATUS = "_configsync_status"
"""The attribute holding a listed peer's ``PeerStatus`` (read once for the page)."""


@admin.register(Peer)
class PeerAdmin(admin.ModelAdmin):
    """Peers; the list warns about clock skew (per peer) and this node's clock (page message)."""

    list_display = (
        "name",
        "transport",
        "base_url",
        "state",
        "enabled",
        "node_id",
        "clock",
        "updated_at",
    )
    list_filter = ("enabled", "transport")
    search_fields = ("name", "base_url", "node_id")
    readonly_fields = ("node_id", "state", "clock", "created_at", "updated_at")
    inlines = [PeerCheckpointInline]
    change_list_template = "admin/configsync/peer/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site
        return [
            path(
                "overview/",
                site.admin_view(sync_overview_view),
                name="configsync_sync_overview",
            ),
            path("sync-now/", site.admin_view(sync_now_view), name="configsync_sync_now"),
            *super().get_urls(),
        ]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The list's page, each peer with its status read for the whole page at once (the
        state and clock columns would otherwise query per row)."""
        changelist = super().get_changelist_instance(request)
        peers = list(changelist.result_list)
        ahead = max((clock_hlc_ms() or 0) - _now_ms(), 0)
        for peer, status in zip(peers, peer_statuses(peers, hlc_ahead_ms=ahead), strict=True):
            setattr(peer, _STATUS, status)
        return changelist

    def _status(self, obj: Peer) -> PeerStatus:
        status = getattr(obj, _STATUS, None)
        if status is None:  # the change page: one peer
            ahead = max((clock_hlc_ms() or 0) - _now_ms(), 0)
            status = peer_status(peer=obj, hlc_ahead_ms=ahead)
            setattr(obj, _STATUS, status)
        return cast(PeerStatus, status)

    @admin.display(description="sync state")
    def state(self, obj: Peer) -> SafeString:
        if obj.pk is None:
            return format_html("{}", "-")
        state, reason = peer_health_state(self._status(obj))
        return format_html("{} <small>{}</small>", state_badge(state, reason), reason)

    @admin.display(description="clock skew")
    def clock(self, obj: Peer) -> str:
        if obj.pk is None:
            return "not measured yet"
        status = self._status(obj)
        if status.clock_skew_ms is None:
            return "not measured yet"
        state = status.clock_state
        label = "" if state == CLOCK_OK else f" — {state.replace('_', ' ').upper()}"
        return f"{status.clock_skew_ms:+d} ms{label}"

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        clock = clock_status()
        if clock.state == CLOCK_OUT_OF_BOUNDS:
            self.message_user(
                request,
                "This node's clock is OUT OF BOUNDS: "
                + "; ".join(clock.problems)
                + ". Recovery: "
                + clock.recovery,
                messages.ERROR,
            )
        elif clock.problems:
            self.message_user(request, "Clock: " + "; ".join(clock.problems), messages.WARNING)
        return super().changelist_view(request, extra_context)


def _now_ms() -> int:
    from configsync.replication.hlc import physical_now_ms

    return physical_now_ms()


_CONFLICT_COLUMNS = ("model_label", "natural_key", "source", "status", "winner", "resolution")
_ABSENT = object()


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if value is None:
        return "(empty)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


_SAME_WORDS = {SAME: "same value", CHANGED: "different values"}


def _same_secret(conflict: Conflict, name: str, local: Any, remote: Any) -> str:
    """Whether the two versions' secret ``name`` hold the same value, in words
    (``selectors.history.secret_status``, which the versions page uses too)."""
    if local == remote:
        return _SAME_WORDS[SAME]
    try:
        model = registry.get(conflict.model_label)
    except LookupError:  # a model this release does not replicate: nothing to decrypt under
        return "cannot tell (this model does not replicate here)"
    status = secret_status(
        model,
        conflict.natural_key,
        name,
        None if local is _ABSENT else local,
        None if remote is _ABSENT else remote,
    )
    return _SAME_WORDS.get(status, "cannot tell (this node cannot decrypt both)")


def conflict_comparison(conflict: Conflict) -> list[dict[str, Any]]:
    """One row per field of either version: ``name``, ``local``, ``remote``, ``differs``,
    ``secret`` and, for a secret, ``same`` ("same value"/"different values"/"cannot tell").
    Secrets show ``MASK`` (or "(empty)"), never their plaintext or ciphertext; so do the plain
    fields ``MASKED_WHEN`` names when either side sets its flag (a setting one node made
    sensitive: the other side's plain value is that secret, or its predecessor)."""
    try:
        model = registry.get(conflict.model_label)
        order = model.wire_field_names()
        secret = set(model.encrypted_field_names())
    except Exception:  # a model this release does not replicate: every field is masked
        order, secret = [], None
    local = conflict.local.data or {}
    remote = conflict.remote.data or {}
    rule = MASKED_WHEN.get(conflict.model_label)
    if secret is not None and rule is not None:
        flag, masked = rule
        if local.get(flag) or remote.get(flag):
            # A plain value of a record one side keeps secret: masked, as the history does.
            secret |= set(masked)
    names = [n for n in order if n in local or n in remote]
    names += sorted((set(local) | set(remote)) - set(names))
    rows = []
    for name in names:
        left, right = local.get(name, _ABSENT), remote.get(name, _ABSENT)
        is_secret = secret is None or name in secret
        row: dict[str, Any] = {"name": name, "differs": left != right, "secret": is_secret}
        if is_secret:
            row["local"] = MASK if left not in (None, "", _ABSENT) else _shown(left)
            row["remote"] = MASK if right not in (None, "", _ABSENT) else _shown(right)
            row["same"] = _same_secret(conflict, name, left, right)
        else:
            row["local"], row["remote"] = _shown(left), _shown(right)
        rows.append(row)
    return rows


def _side(conflict: Conflict, which: str) -> dict[str, Any]:
    version = conflict.local if which == "local" else conflict.remote
    return {
        "which": which,
        "time": hlc_moment(version.hlc),
        "hlc": version.hlc,
        "origin": version.origin or "-",
        "deleted": version.deleted,
        "winner": conflict.winner == which,
    }


@admin.register(Conflict)
class ConflictAdmin(_ReadOnlyAdmin):
    list_display = ("id", *_CONFLICT_COLUMNS, "skew_affected", "detected_at")
    list_filter = ("status", "skew_affected", "model_label", "source")
    search_fields = ("natural_key",)
    fields = (
        *_CONFLICT_COLUMNS,
        "local_summary",
        "remote_summary",
        "changed_fields",
        "skew_affected",
        "detected_at",
        "resolved_at",
        "resolved_hlc",
    )
    readonly_fields = fields
    actions = ["resolve_keep_local", "resolve_keep_remote"]

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="configsync_conflict_resolve",
            ),
            *super().get_urls(),
        ]

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        """Resolving (the page's buttons and the list's actions) needs the change permission,
        though nothing here is edited as a form."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The two versions side by side, with "keep local" / "use remote" while open."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        conflict = Conflict.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        if conflict is None:
            raise Http404("no such conflict")
        context = {
            **self.admin_site.each_context(request),
            **(extra_context or {}),
            "title": f"Conflict {conflict.pk}: {conflict.model_label} {conflict.natural_key}",
            "opts": self.opts,
            "conflict": conflict,
            "sides": [_side(conflict, "local"), _side(conflict, "remote")],
            "rows": conflict_comparison(conflict),
            "can_resolve": conflict.status == Conflict.Status.OPEN
            and self.has_resolve_permission(request),
            "resolve_url": reverse("admin:configsync_conflict_resolve", args=[conflict.pk]),
            "resolved_at": moment_ms(conflict.resolved_at),
            "detected_at": moment_ms(conflict.detected_at),
        }
        return TemplateResponse(request, "admin/configsync/conflict/compare.html", context)

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """``POST choice=local|remote``: ``conflict_resolve``; back to the conflict page."""
        return require_POST(self._resolve_one)(request, object_id)

    def _resolve_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_resolve_permission(request):
            raise PermissionDenied
        page = reverse("admin:configsync_conflict_change", args=[object_id])
        choice = request.POST.get("choice", "")
        if not object_id.isdigit():
            raise Http404("no such conflict")
        try:
            conflict_resolve(
                conflict_id=int(object_id),
                choice=choice,
                allow_reveal=user_can_reveal(request.user),
            )
        except (ConflictResolveError, RevealRequired) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(page)
        kept = "the local version kept" if choice == "local" else "the remote version used"
        self.message_user(request, f"Conflict {object_id} resolved: {kept}.", messages.SUCCESS)
        return HttpResponseRedirect(page)

    @admin.display(description="local version")
    def local_summary(self, obj: Conflict) -> str:
        return obj.local.describe()

    @admin.display(description="remote version")
    def remote_summary(self, obj: Conflict) -> str:
        return obj.remote.describe()

    @admin.display(description="fields that differ")
    def changed_fields(self, obj: Conflict) -> str:
        return ", ".join(obj.changed_fields()) or "-"

    def _resolve(self, request: HttpRequest, queryset: QuerySet[Conflict], choice: str) -> None:
        done = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                conflict_resolve(
                    conflict_id=pk, choice=choice, allow_reveal=user_can_reveal(request.user)
                )
                done += 1
            except (ConflictResolveError, RevealRequired) as exc:
                self.message_user(request, str(exc), messages.WARNING)
        self.message_user(request, f"{done} conflict(s) resolved keeping the {choice} version.")

    @admin.action(description="Resolve: keep the local version", permissions=["resolve"])
    def resolve_keep_local(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve(request, queryset, "local")

    @admin.action(description="Resolve: keep the remote version", permissions=["resolve"])
    def resolve_keep_remote(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve(request, queryset, "remote")


_RUN_COUNTS = ("pulled", "pushed", "conflicts", "quarantined", "skew_ms")


@admin.register(SyncRun)
class SyncRunAdmin(_ReadOnlyAdmin):
    """Runs with their error and their times to the millisecond."""

    list_display = (
        "id",
        "peer",
        "transport",
        "started",
        "finished",
        "duration",
        "ok",
        "error_line",
        *_RUN_COUNTS,
    )
    list_filter = ("ok", "peer", "peer__transport")
    list_select_related = ("peer",)
    readonly_fields = (
        "peer",
        "started",
        "finished",
        "duration",
        "ok",
        "error",
        *_RUN_COUNTS,
    )
    fields = readonly_fields

    @admin.display(description="transport", ordering="peer__transport")
    def transport(self, obj: SyncRun) -> str:
        return obj.peer.transport

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: SyncRun) -> str:
        return moment_ms(obj.started_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj: SyncRun) -> str:
        return moment_ms(obj.finished_at)

    @admin.display(description="duration")
    def duration(self, obj: SyncRun) -> str:
        return duration_ms(obj.started_at, obj.finished_at)

    @admin.display(description="error")
    def error_line(self, obj: SyncRun) -> str:
        return error_summary(obj.error) or "-"
