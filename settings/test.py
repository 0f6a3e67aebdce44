"""Settings for the test suite.

PostgreSQL when ``TEST_DATABASE_URL`` is set, SQLite otherwise; Redis when ``REDIS_URL`` is set.
A fixed, obviously fake encryption keyring is used unless the test overrides it.
"""

import os

from configsync.conf import TEST_MERGE_RULES

from .environment import startup_guard

os.environ.setdefault("DJANGO_SECRET_KEY", "django-insecure-test-only")
os.environ.setdefault(
    # Two throwaway test keys (not secrets): the first encrypts, both decrypt.
    "CONFIGSYNC_ENCRYPTION_KEYS",
    "Y29uZmlnc3luYy10ZXN0LWtleS0wMS0tLS0tLS0tLS0,Y29uZmlnc3luYy10ZXN0LWtleS0wMi0tLS0tLS0tLS0",
)

with startup_guard():
    from .base import *  # noqa: F403
    from .base import VAR_DIR, database_config, env

    # Test only (README): a deliberately wrong merge rule for the convergence tests to catch;
    # settings.production refuses the variable and check configsync.E023 any other module.
    CONFIGSYNC_TEST_MERGE_RULE = env.choice(
        "CONFIGSYNC_TEST_MERGE_RULE", [r for r in TEST_MERGE_RULES if r], default=""
    )

    DATABASES = {
        "default": database_config(
            env.str("TEST_DATABASE_URL", default="sqlite:///var/test.sqlite3"),
            variable="TEST_DATABASE_URL",
        )
    }

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = False
CONFIGSYNC_DEV_KEY_FILE = VAR_DIR / "test-dev-encryption.key"
REST_FRAMEWORK_THROTTLE_DISABLED = True

# A deployment's own app with two replicated models (data types "projects" and "templates").
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
