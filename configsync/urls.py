"""The versioned API, mounted at ``/api/v1/`` by ``settings.urls``."""

from django.urls import include, path

from configsync.api import ops

urlpatterns = [
    path("health", ops.HealthView.as_view(), name="health"),
    path("sync/status", ops.SyncStatusView.as_view(), name="sync-status"),
    path("sync/trigger", ops.SyncTriggerView.as_view(), name="sync-trigger"),
    path("sync/", include("configsync.replication.api.urls")),
    path("", include("configsync.api.urls")),
]
