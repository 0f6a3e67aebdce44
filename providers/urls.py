"""URLs of the AI provider API, mounted under ``/api/v1/`` by ``settings.urls``:
``configs/ai-providers/`` (by name) and its ``test-connection`` action."""

from rest_framework.routers import SimpleRouter

from providers.api import AIProviderViewSet

router = SimpleRouter(trailing_slash=True)
router.register("configs/ai-providers", AIProviderViewSet, basename="ai-provider")

urlpatterns = router.urls
