"""The project's URLs plus plain DRF retrieve views of SystemConfig (the REST bench's peers)."""

from typing import Any

from django.urls import path
from rest_framework import generics, serializers
from rest_framework.authentication import get_authorization_header
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from configsync.api.authentication import (
    KEYWORD,
    ApiKeyAuthentication,
    ApiKeyPrincipal,
    usable_key,
)
from configsync.api.throttling import CallerRateThrottle
from configsync.models import ServiceAPIKey, SystemConfig
from settings.urls import urlpatterns as project_urlpatterns


class PlainSystemConfigSerializer(serializers.ModelSerializer):
    class Meta:
        model = SystemConfig
        fields = [
            "key",
            "value",
            "value_type",
            "is_sensitive",
            "category",
            "description",
            "created_at",
            "updated_at",
        ]


class PlainRetrieveView(generics.RetrieveAPIView):
    """What a DRF user would write first: ModelSerializer + RetrieveAPIView, same defaults."""

    queryset = SystemConfig.objects.all()
    serializer_class = PlainSystemConfigSerializer
    lookup_field = "key"


class UncachedApiKeyAuthentication(ApiKeyAuthentication):
    """API-key authentication as before issue 14: one query per request, nothing cached."""

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ServiceAPIKey] | None:
        parts = get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != KEYWORD.lower().encode():
            return None
        record = usable_key(parts[1].decode())
        return ApiKeyPrincipal(name=record.name, prefix=record.prefix), record


class CacheValueRateThrottle(CallerRateThrottle):
    """Throttling as before issue 14: DRF's path (the window read and written as a cache value,
    two round trips) whatever the cache."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = "user" if request.user and request.user.is_authenticated else "anon"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return SimpleRateThrottle.allow_request(self, request, view)

    def wait(self) -> float | None:
        return SimpleRateThrottle.wait(self)


class LegacyPlainRetrieveView(PlainRetrieveView):
    """The plain view with authentication and throttling as they were before issue 14."""

    authentication_classes = [UncachedApiKeyAuthentication]
    throttle_classes = [CacheValueRateThrottle]


urlpatterns = [
    *project_urlpatterns,
    path("bench/plain/<str:key>/", PlainRetrieveView.as_view()),
    path("bench/plain-legacy/<str:key>/", LegacyPlainRetrieveView.as_view()),
]
