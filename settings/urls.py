"""Top-level URLs: the admin, the versioned API and Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("configsync.urls")),
]
