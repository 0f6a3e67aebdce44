"""Push-on-commit helpers: each test starts with every peer's push flag lowered.

A flag outlives the test that raised it (a Redis key, or a file under ``CONFIGSYNC_VAR_DIR``)
while the database is rolled back, and a peer of the next test may get the same id.
"""

from __future__ import annotations

import shutil

from django.conf import settings
from django.core.cache import cache

from configsync.conf import app_settings


def push_flags_clear() -> None:
    """Lower every push flag of this test process (see ``services.sync``): the test's own Redis
    DB is emptied (as ``tests/tasks`` does anyway) and the flag files removed."""
    if getattr(settings, "REDIS_URL", ""):
        cache.clear()
    shutil.rmtree(app_settings.var_dir / "push", ignore_errors=True)
