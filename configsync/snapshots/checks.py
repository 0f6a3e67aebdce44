"""System checks of snapshots and promotion.

* E060 — ``CONFIGSYNC_PROMOTION_RULES`` names an unknown data type, key, transform or field, or
  a value of the wrong kind, or ``unusable_password`` on a field that is not secret (restore could
  not set it) (one error each, naming it, never a value): ``configsync promote``
  refuses to run until it is fixed.
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from configsync.conf import app_settings


def checks_register() -> None:
    """Register the snapshot checks (from ``ConfigsyncConfig.ready()``; twice is a no-op)."""
    checks.register(check_promotion_rules)


def check_promotion_rules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from configsync.replication import registry
    from configsync.snapshots.promotion import rules_problems

    return [
        checks.Error(
            f"CONFIGSYNC_PROMOTION_RULES: {message}",
            hint="See `configsync promote --explain` and README 'Snapshots, restore and "
            "promotion'.",
            id="configsync.E060",
        )
        for message in rules_problems(app_settings.PROMOTION_RULES or {}, registry.data_types())
    ]
