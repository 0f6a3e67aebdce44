"""System checks of replication.

* W020 — peers are configured but ``CONFIGSYNC_SYNC_SECRET`` is not: sync requests cannot be
  signed, and this node refuses every peer's requests.
* E020 — ``CONFIGSYNC_NODE_ID`` is not 1-64 letters, digits, ``_``, ``.`` or ``-``: it is part of
  every HLC timestamp, and peers would refuse this node's changes.
* W040 — stored records fail the validation every write passes (database check: ``migrate`` and
  ``check --database default`` run it): rows stored before received versions were validated, or
  loaded with raw fixtures; reading their value fails. Names records and rules, never values.
"""

from __future__ import annotations

import re
from typing import Any

from django.core import checks
from django.db import DatabaseError

from configsync.conf import app_settings


def checks_register() -> None:
    """Register replication's checks (from ``ConfigsyncConfig.ready()``; twice is a no-op)."""
    checks.register(check_sync_secret, checks.Tags.security)
    checks.register(check_node_id)
    checks.register(check_stored_records, checks.Tags.database)


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


NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}\Z")


def check_node_id(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    configured = str(app_settings.NODE_ID or "")
    if configured and not NODE_ID_PATTERN.match(configured):
        return [
            checks.Error(
                "CONFIGSYNC_NODE_ID must be 1-64 letters, digits, '_', '.' or '-'.",
                id="configsync.E020",
            )
        ]
    return []


def check_stored_records(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from configsync.replication.selectors.validity import stored_records_invalid

    try:
        invalid = stored_records_invalid(limit=20)
    except DatabaseError:  # tables not migrated yet
        return []
    return [
        checks.Warning(
            f"Stored {label} {key!r} fails validation ({reasons}); reading its value fails.",
            hint="Set a valid value (`configsync set`, the admin or the API) or delete it.",
            id="configsync.W040",
        )
        for label, key, reasons in invalid
    ]
