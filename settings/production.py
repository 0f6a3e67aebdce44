"""Production settings: every secret is required, nothing falls back to a default.

A missing or malformed variable stops start-up, whatever the entry point, with a one-line
message naming it on stderr and exit status 3, never a traceback.
"""

import sys

from django.core.exceptions import ImproperlyConfigured

from configsync.crypto.keyring import validate_key_texts

from .base import *  # noqa: F403
from .base import env

try:
    DEBUG = env.bool("DJANGO_DEBUG", default=False)
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
    CONFIGSYNC_ENCRYPTION_KEYS = env.list("CONFIGSYNC_ENCRYPTION_KEYS")
    # Validated here, not only by the system checks: gunicorn and celery never run the checks,
    # and a node must not start (and fail on the first secret it reads) with an unusable key.
    validate_key_texts(CONFIGSYNC_ENCRYPTION_KEYS)
    if CONFIGSYNC_PEERS:  # noqa: F405
        CONFIGSYNC_SYNC_SECRET = env.str("CONFIGSYNC_SYNC_SECRET")
except ImproperlyConfigured as exc:
    # Every entry point (manage.py, gunicorn, celery) ends with this one line, no traceback.
    # Status 3 is gunicorn's "worker failed to boot": its master stops instead of respawning.
    sys.stderr.write(f"configsync: configuration error: {exc}\n")
    raise SystemExit(3) from None

SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
