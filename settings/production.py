"""Production settings: every secret is required, nothing falls back to a default.

A missing variable stops start-up with a one-line message naming it (``manage.py`` prints
django-environ's ``ImproperlyConfigured`` without a traceback).
"""

from configsync.crypto.keyring import validate_key_texts

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CONFIGSYNC_ENCRYPTION_KEYS = env.list("CONFIGSYNC_ENCRYPTION_KEYS")
# Validated here, not only by the system checks: gunicorn and celery never run the checks, and a
# node must not start (and fail on the first secret it reads) with a key it cannot use.
validate_key_texts(CONFIGSYNC_ENCRYPTION_KEYS)
if CONFIGSYNC_PEERS:  # noqa: F405
    CONFIGSYNC_SYNC_SECRET = env.str("CONFIGSYNC_SYNC_SECRET")

SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
