"""Development settings: ``make run`` with nothing configured gives a working node.

Embedded defaults: SQLite and Celery's filesystem broker (``configsync.broker``) under ``var/``,
local-memory cache, and a development encryption key generated once into ``var/`` (see
``configsync.crypto.keyring``). A malformed variable stops start-up with one line, as in
production (``settings.environment.startup_guard``).
"""

import os

from configsync.conf import TEST_MERGE_RULES

from .environment import startup_guard

os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ.setdefault("DJANGO_SECRET_KEY", "django-insecure-local-development-only")

with startup_guard():
    from .base import *  # noqa: F403
    from .base import env

    # Test only (README): a deliberately wrong merge rule for the convergence tests to catch;
    # settings.production refuses the variable and check configsync.E023 any other module.
    CONFIGSYNC_TEST_MERGE_RULE = env.choice(
        "CONFIGSYNC_TEST_MERGE_RULE", [r for r in TEST_MERGE_RULES if r], default=""
    )
