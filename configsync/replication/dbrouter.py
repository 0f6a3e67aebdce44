"""Keeps the external database (``EXTERNAL_DATABASE_URL``) to the database transport's tables.

The external database is shared by every node of a replication group: only the transport's own
tables (app label ``configsync_external``, created by ``configsync external init`` or on first
use) ever live there, and nothing else is migrated to it or read from it.
"""

from __future__ import annotations

from typing import Any

from configsync.conf import app_settings

EXTERNAL_APP_LABEL = "configsync_external"


class ExternalDatabaseRouter:
    """``DATABASE_ROUTERS`` entry: no ordinary model on the external alias, no migrations there."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if db == app_settings.EXTERNAL_DATABASE_ALIAS:
            return False
        if app_label == EXTERNAL_APP_LABEL:
            return False
        return None
