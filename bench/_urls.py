"""The project's URLs plus a plain DRF retrieve view of SystemConfig (the REST bench's peer)."""

from django.urls import path
from rest_framework import generics, serializers

from configsync.models import SystemConfig
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


urlpatterns = [
    *project_urlpatterns,
    path("bench/plain/<str:key>/", PlainRetrieveView.as_view()),
]
