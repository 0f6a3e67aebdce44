"""The versioned API, mounted at ``/api/v1/`` by ``settings.urls``."""

from django.urls import include, path

urlpatterns = [
    path("", include("configsync.api.urls")),
]
