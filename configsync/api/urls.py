"""URLs of the config API under ``/api/v1/``: settings, the schema and its docs.

Other apps mount their own records beside these (``providers.urls``, from ``settings.urls``).
"""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from configsync.api.audit import AuditEventListView
from configsync.api.permissions import HasReadScope
from configsync.api.views import SystemConfigViewSet

router = SimpleRouter(trailing_slash=True)
router.register("configs/system", SystemConfigViewSet, basename="system-config")

urlpatterns = [
    *router.urls,
    path("audit/", AuditEventListView.as_view(), name="audit-list"),
    path(
        "schema/",
        SpectacularAPIView.as_view(permission_classes=[HasReadScope]),
        name="api-schema",
    ),
    path(
        "docs/",
        # No OPTIONS metadata: the page renders only its template (metadata there was a 500).
        SpectacularSwaggerView.as_view(
            url_name="api-schema", permission_classes=[HasReadScope], metadata_class=None
        ),
        name="api-docs",
    ),
]
