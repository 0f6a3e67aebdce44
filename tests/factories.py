"""Test data shared by the suite: obviously fake canaries and factories.

Replicated records (settings, providers) are built through the services (``system_config_set``,
``ai_provider_set``), which encrypt, validate and record the change as every real write does; a
model factory would build rows the application itself can never produce. Rows with no such
service path (peers) come from factory_boy factories.
"""

from __future__ import annotations

import factory

from configsync.models import Peer

CANARY_SECRET = "sk-CANARY-0000-do-not-use"


class PeerFactory(factory.django.DjangoModelFactory):
    """A peer row. The default address is port 9 of 127.0.0.1, where nothing answers."""

    class Meta:
        model = Peer

    name = factory.Sequence(lambda n: f"peer-{n}")
    base_url = "http://127.0.0.1:9"
