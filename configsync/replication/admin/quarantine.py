"""Django admin for quarantined replicated changes: read-only, with retry and drop actions.

A quarantined item's payload is never rendered (it may hold a peer's plain values and its
secrets' ciphertext tokens); the pages show where it came from, the record it names, its
timestamp, the reason and the status. The actions call
``configsync.replication.services.quarantine``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from configsync.models import QuarantinedChange
from configsync.replication.services.quarantine import quarantine_drop, quarantine_retry
from configsync.replication.services.wire import QUARANTINED

_COLUMNS = ("model_label", "natural_key", "source", "status", "attempts", "reason")


@admin.register(QuarantinedChange)
class QuarantinedChangeAdmin(admin.ModelAdmin):
    list_display = ("id", *_COLUMNS, "received_at")
    list_filter = ("status", "model_label", "source")
    search_fields = ("natural_key",)
    fields = (*_COLUMNS, "source_node", "hlc", "fingerprint", "received_at", "updated_at")
    readonly_fields = fields
    actions = ["retry_selected", "drop_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Retry: apply again (kept open with its new reason if it fails)")
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[QuarantinedChange]) -> None:
        applied = failed = 0
        for pk in queryset.values_list("pk", flat=True):
            (outcome,) = quarantine_retry(quarantine_id=pk)
            if outcome.status == QUARANTINED:
                failed += 1
            else:
                applied += 1
        self.message_user(request, f"{applied} applied, {failed} still quarantined.")
        if failed:
            self.message_user(request, "See each item's reason.", messages.WARNING)

    @admin.action(description="Drop: keep for the record, stop retrying")
    def drop_selected(self, request: HttpRequest, queryset: QuerySet[QuarantinedChange]) -> None:
        count = 0
        for pk in queryset.values_list("pk", flat=True):
            quarantine_drop(quarantine_id=pk)
            count += 1
        self.message_user(request, f"{count} quarantined change(s) dropped.")
