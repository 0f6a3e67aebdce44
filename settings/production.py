"""Production settings: every secret is required, nothing falls back to a default.

A missing or malformed variable stops start-up, whatever the entry point, with a one-line
message naming it on stderr and exit status 3, never a traceback
(``settings.environment.startup_guard``; ``settings.base`` validates every variable it reads).
"""

from .environment import ConfigurationError, is_placeholder, startup_guard

with startup_guard():
    from .base import *  # noqa: F403
    from .base import CONFIGSYNC_PEERS, CONFIGSYNC_SYNC_SECRET, MIDDLEWARE, SECRET_KEY, env

    if SECRET_KEY.startswith("django-insecure-"):
        raise ConfigurationError(
            "DJANGO_SECRET_KEY is a development key (django-insecure-...): generate a new one"
        )
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
    # gunicorn and celery never run the system checks (E033 says the same for manage.py).
    if env.is_set("CONFIGSYNC_CLOCK_OFFSET_MS") and env.int("CONFIGSYNC_CLOCK_OFFSET_MS") != 0:
        raise ConfigurationError(
            "CONFIGSYNC_CLOCK_OFFSET_MS is a test/development switch: unset it in production"
        )
    # Validated by settings.base too; required here. gunicorn and celery never run the system
    # checks, and a node must not start (and fail on the first secret it reads) without a key.
    CONFIGSYNC_ENCRYPTION_KEYS = env.list("CONFIGSYNC_ENCRYPTION_KEYS")
    if CONFIGSYNC_PEERS:
        CONFIGSYNC_SYNC_SECRET = env.str("CONFIGSYNC_SYNC_SECRET")
    # An example value (compose.yaml's were) that works would run the node on a secret anyone
    # can read: the published encryption key opens every backup of the database.
    for _name, _values in (
        ("DJANGO_SECRET_KEY", [SECRET_KEY]),
        ("CONFIGSYNC_SYNC_SECRET", [CONFIGSYNC_SYNC_SECRET]),
        ("CONFIGSYNC_ENCRYPTION_KEYS", CONFIGSYNC_ENCRYPTION_KEYS),
    ):
        if any(is_placeholder(_value) for _value in _values if _value):
            raise ConfigurationError(
                f"{_name} is a placeholder (an example published with configsync): set a "
                "value of your own"
            )
    if env.str("CONFIGSYNC_TEST_MERGE_RULE", default="").strip():
        # A test-only switch that makes the node decide conflicts wrongly (check E023).
        raise ConfigurationError(
            "CONFIGSYNC_TEST_MERGE_RULE is a test-only switch: unset it in production"
        )
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=True)

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Static files (the admin's, the API docs'), served by gunicorn itself through WhiteNoise, right
# after SecurityMiddleware: compressed (gzip, Brotli when installed) and with content-hashed names
# cached for a year. `manage.py collectstatic` must run first (the README's production steps, the
# Dockerfile): the hashed names come from the manifest it writes into STATIC_ROOT
# (CONFIGSYNC_VAR_DIR/static), and a page naming a file missing from it is an error.
MIDDLEWARE = list(MIDDLEWARE)
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
