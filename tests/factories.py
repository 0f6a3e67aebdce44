"""factory_boy factories for configsync's models. Secrets are obviously fake canaries."""

from __future__ import annotations

import factory

from configsync.models import Peer, SystemConfig
from providers.models import AIProviderConfig

CANARY_SECRET = "sk-CANARY-0000-do-not-use"


class SystemConfigFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SystemConfig
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"SETTING_{n}")
    value_type = "str"
    value = factory.Sequence(lambda n: f"value-{n}")
    category = "general"


class SensitiveSystemConfigFactory(SystemConfigFactory):
    is_sensitive = True
    value = ""
    secret_value = factory.Sequence(lambda n: f"sk-CANARY-setting-{n}")


class AIProviderConfigFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AIProviderConfig
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"openai-{n}")
    kind = "openai"
    api_key = factory.Sequence(lambda n: f"sk-CANARY-provider-{n}")
    base_url = "https://api.openai.com/v1"
    default_model = "gpt-4o-mini"


class PeerFactory(factory.django.DjangoModelFactory):
    """A peer row. The default address is port 9 of 127.0.0.1, where nothing answers."""

    class Meta:
        model = Peer

    name = factory.Sequence(lambda n: f"peer-{n}")
    base_url = "http://127.0.0.1:9"
