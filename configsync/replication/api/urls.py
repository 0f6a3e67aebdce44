"""URLs of replication under ``/api/v1/sync/`` (status and trigger live in ``configsync.urls``)."""

from django.urls import path

from configsync.replication.api import log as sync_log
from configsync.replication.api import ops, peer, quarantine

urlpatterns = [
    path("changes", peer.SyncChangesView.as_view(), name="sync-changes"),
    path("digest", peer.SyncDigestView.as_view(), name="sync-digest"),
    path("push", peer.SyncPushView.as_view(), name="sync-push"),
    path("log", sync_log.SyncLogView.as_view(), name="sync-log"),
    path("strategies", ops.StrategiesView.as_view(), name="sync-strategies"),
    path("conflicts/", ops.ConflictListView.as_view(), name="sync-conflicts"),
    path(
        "conflicts/<int:pk>/resolve",
        ops.ConflictResolveView.as_view(),
        name="sync-conflict-resolve",
    ),
    path("quarantine/", quarantine.QuarantineListView.as_view(), name="sync-quarantine"),
    path(
        "quarantine/<int:pk>/retry",
        quarantine.QuarantineRetryView.as_view(),
        name="sync-quarantine-retry",
    ),
    path(
        "quarantine/<int:pk>/drop",
        quarantine.QuarantineDropView.as_view(),
        name="sync-quarantine-drop",
    ),
]
