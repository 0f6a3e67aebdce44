"""Top-level URLs: the landing page, the admin, the versioned API and Prometheus metrics.

Each app mounts its own API under ``/api/v1/``: ``configsync.urls`` (settings, sync, health, the
schema and its Swagger UI page) and ``providers.urls`` (AI providers). ``/`` and the Redoc page
are ``configsync.web``'s.
"""

from django.contrib import admin
from django.urls import include, path

from configsync.metrics import metrics_view
from configsync.web.views import ApiRedocView, landing

urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("api/v1/redoc/", ApiRedocView.as_view(), name="api-redoc"),
    path("api/v1/", include("configsync.urls")),
    path("api/v1/", include("providers.urls")),
    path("metrics", metrics_view, name="metrics"),
]
