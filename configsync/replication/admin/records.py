"""Django admin for replication: peers (editable), conflicts and sync runs (read-only).

Conflicts never render a value, plaintext or ciphertext: the pages show the record, both
versions' timestamps and origins, and the names of the fields that differ. Resolving is an admin
action that calls ``configsync.replication.services.conflicts.conflict_resolve``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from configsync.models import Conflict, Peer, PeerCheckpoint, SyncRun
from configsync.replication.errors import ConflictResolveError
from configsync.replication.selectors.feed import clock_hlc_ms
from configsync.replication.selectors.status import (
    CLOCK_OK,
    CLOCK_OUT_OF_BOUNDS,
    clock_status,
    peer_clock_skew,
    peer_clock_state,
)
from configsync.replication.services.conflicts import conflict_resolve


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


@admin.register(Peer)
class PeerAdmin(admin.ModelAdmin):
    """Peers; the list warns about clock skew (per peer) and this node's clock (page message)."""

    list_display = ("name", "transport", "base_url", "enabled", "node_id", "clock", "updated_at")
    list_filter = ("enabled", "transport")
    search_fields = ("name", "base_url", "node_id")
    readonly_fields = ("node_id", "clock", "created_at", "updated_at")
    inlines = [PeerCheckpointInline]

    @admin.display(description="clock skew")
    def clock(self, obj: Peer) -> str:
        skew = peer_clock_skew(peer=obj)
        if skew is None:
            return "not measured yet"
        now_ahead = max((clock_hlc_ms() or 0) - _now_ms(), 0)
        state, _ = peer_clock_state(skew, hlc_ahead_ms=now_ahead)
        label = "" if state == CLOCK_OK else f" — {state.replace('_', ' ').upper()}"
        return f"{skew:+d} ms{label}"

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
                conflict_resolve(conflict_id=pk, choice=choice)
                done += 1
            except ConflictResolveError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        self.message_user(request, f"{done} conflict(s) resolved keeping the {choice} version.")

    @admin.action(description="Resolve: keep the local version")
    def resolve_keep_local(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve(request, queryset, "local")

    @admin.action(description="Resolve: keep the remote version")
    def resolve_keep_remote(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve(request, queryset, "remote")


_RUN_COUNTS = ("pulled", "pushed", "conflicts", "quarantined", "skew_ms")


@admin.register(SyncRun)
class SyncRunAdmin(_ReadOnlyAdmin):
    list_display = ("id", "peer", "started_at", "finished_at", "ok", *_RUN_COUNTS)
    list_filter = ("ok", "peer")
    readonly_fields = ("peer", "started_at", "finished_at", "ok", "error", *_RUN_COUNTS)
