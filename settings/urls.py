"""Top-level URLs: the admin, the versioned API and Prometheus metrics.

Each app mounts its own API under ``/api/v1/``: ``configsync.urls`` (settings, sync, health, the
schema) and ``providers.urls`` (AI providers).
"""

from django.contrib import admin
from django.urls import include, path

from configsync.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("configsync.urls")),
    path("api/v1/", include("providers.urls")),
    path("metrics", metrics_view, name="metrics"),
]
