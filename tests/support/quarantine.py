"""A quarantined change, made the way one arrives: a signed push of an item this node refuses."""

from __future__ import annotations

import json

from django.test import Client

from configsync.models import QuarantinedChange
from configsync.replication.signing import sign
from tests.support.replication import REMOTE, SECRET, config_data, remote_change


def quarantine_change(key: str, value: str) -> QuarantinedChange:
    """Push ``key`` = ``value`` from ``REMOTE`` with a value type no node knows (needs
    ``use_replication_settings``); the change is quarantined, its payload holding ``value``."""
    change = remote_change(key, value)
    change["data"] = config_data(key, value, value_type=42)
    raw = json.dumps({"changes": [change]}).encode()
    path = "/api/v1/sync/push"
    headers = sign(secret=SECRET, method="POST", path=path, body=raw, node=REMOTE)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    response = Client().post(path, raw, content_type="application/json", **extra)
    assert response.json()["results"][0]["status"] == "quarantined", response.content
    return QuarantinedChange.objects.get(natural_key=key)
