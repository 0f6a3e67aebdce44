"""System checks of replication.

* W020 — peers are configured but ``CONFIGSYNC_SYNC_SECRET`` is not: sync requests cannot be
  signed, and this node refuses every peer's requests.
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from configsync.conf import app_settings


@checks.register(checks.Tags.security)
def check_sync_secret(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if app_settings.PEERS and not app_settings.SYNC_SECRET:
        return [
            checks.Warning(
                "CONFIGSYNC_PEERS is set but CONFIGSYNC_SYNC_SECRET is not: replication is off.",
                hint="Set the same CONFIGSYNC_SYNC_SECRET on every node of the replication group.",
                id="configsync.W020",
            )
        ]
    return []
