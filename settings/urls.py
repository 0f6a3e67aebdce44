"""Top-level URLs: the admin, the versioned API and Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path

from configsync.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("configsync.urls")),
    path("metrics", metrics_view, name="metrics"),
]
