"""Settings shared by every environment.

Every variable is read and validated here (or in the environment's module) through the one
``env`` object below (``settings.environment.Environment``): a missing or malformed value raises
``ImproperlyConfigured`` naming the variable, which the environment modules (``local``, ``test``,
``production``, each importing this one inside ``startup_guard()``) turn into one line on stderr
and exit status 3. A ``.env`` file beside ``manage.py`` is read when present; variables already in
the process environment win. App options live under ``CONFIGSYNC_*`` and are read by the app only
through ``configsync.conf``.
"""

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ValidationError

from configsync.conf import DEFAULTS as _APP_DEFAULTS
from configsync.conf import DEPLOYMENT_MODES, SYNC_INTERVAL_MAX_SECONDS, parse_peers
from configsync.crypto.keyring import validate_key_texts
from configsync.replication.checks import NODE_ID_PATTERN as _NODE_ID

from .environment import ConfigurationError, Environment

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = Environment()
_dotenv = BASE_DIR / ".env"
if _dotenv.is_file():
    # read_env never overrides a variable that is already set, so OS variables win.
    environ.Env.read_env(str(_dotenv), overwrite=False)
# One folder per node: a second node on one host (or each node of a multi-node test) gives its
# own CONFIGSYNC_VAR_DIR, and every piece of this node's local state follows it: the default
# SQLite database, the development key, the embedded broker's folders, Celery beat's schedule,
# the file locks, the worker and beat heartbeats (without Redis) and collectstatic's STATIC_ROOT.
# A relative path is taken from the project directory (like a relative SQLite path), so web,
# worker and beat agree wherever they were started. Created here (Celery beat and kombu's
# filesystem transport do not create their folders) and proven writable, else start-up stops.
VAR_DIR = env.directory("CONFIGSYNC_VAR_DIR", VAR_DIR, base_dir=BASE_DIR)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
for _host in ALLOWED_HOSTS:
    if "/" in _host or " " in _host:
        raise ConfigurationError(
            "DJANGO_ALLOWED_HOSTS lists host names (e.g. cfg.example.com), not URLs"
        )
# Messages (the admin's "… doesn't exist", change messages) are masked like log lines.
MESSAGE_STORAGE = "configsync.web.messages.MaskingMessageStorage"
# Behind a proxy that terminates TLS: the origins browsers use (the admin's forms post with the
# https origin) and whether to trust the proxy's X-Forwarded-Proto (set it only when the proxy
# always sets or strips that header: otherwise a client could claim https).
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
for _origin in CSRF_TRUSTED_ORIGINS:
    _parts = urlsplit(_origin)
    if (
        _parts.scheme not in ("http", "https")
        or not _parts.netloc
        or _parts.path.strip("/")
        or _parts.query
        or _parts.fragment
    ):
        raise ConfigurationError(
            "DJANGO_CSRF_TRUSTED_ORIGINS lists origins such as https://cfg.example.com"
        )
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our own static files
    "configsync",
    "providers",
]

MIDDLEWARE = [
    # First: refuses unstorable text in path/query/headers; masks secrets in DEBUG error pages.
    "configsync.middleware.EdgeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Names the caller of every change and reveal for the audit trail (configsync.actor).
    "configsync.middleware.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "settings.urls"
WSGI_APPLICATION = "settings.wsgi.application"
ASGI_APPLICATION = "settings.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


DATABASE_CONN_MAX_AGE = 600
"""Seconds a database connection is kept for reuse (Django's ``CONN_MAX_AGE``)."""


def database_config(url: str, *, variable: str = "DATABASE_URL") -> dict[str, Any]:
    """Parse (and validate) a database URL; SQLite gets settings that let web, worker and beat
    share it. A relative SQLite path is relative to the repository; errors name ``variable``."""
    config = Environment({variable: url}).database(variable, url, base_dir=BASE_DIR)
    # Persistent connections (web, worker and beat alike), checked before reuse: opening one per
    # request cost a sync push about a fifth of its time. The URL may override both
    # (``?conn_max_age=0``).
    config.setdefault("CONN_MAX_AGE", DATABASE_CONN_MAX_AGE)
    config.setdefault("CONN_HEALTH_CHECKS", True)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config.setdefault("OPTIONS", {}).update(
            {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    return config


DATABASES = {
    "default": database_config(
        env.str("DATABASE_URL", default=f"sqlite:///{(VAR_DIR / 'configsync.sqlite3').absolute()}")
    )
}
EXTERNAL_DATABASE_URL = env.str("EXTERNAL_DATABASE_URL", default="")
if EXTERNAL_DATABASE_URL:
    # The database transport's shared database: its own tables only (never migrated with ours).
    DATABASES["external"] = database_config(EXTERNAL_DATABASE_URL, variable="EXTERNAL_DATABASE_URL")
DATABASE_ROUTERS = ["configsync.replication.dbrouter.ExternalDatabaseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.redis_url("REDIS_URL")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "configsync",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Celery (read by settings/celery.py with namespace "CELERY") -------------------------------
# The broker is chosen on its own (CELERY_BROKER_URL: RabbitMQ, Redis, or configsync-fs:// for
# the embedded one); without it, REDIS_URL's server is the broker too, else the embedded broker.
# REDIS_URL keeps the cache, locks and notifications whichever broker runs the tasks. Celery reads
# CELERY_BROKER_URL from the environment itself, ahead of these settings: validated here first.
_broker_url = env.broker_url("CELERY_BROKER_URL")
if not _broker_url:
    _broker_url = REDIS_URL or "configsync-fs://"
CELERY_BROKER_URL = _broker_url
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
if _broker_url.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
elif _broker_url.startswith("configsync-fs:"):
    # Embedded (no server): kombu's filesystem transport with whole-file writes
    # (configsync.broker explains why), every folder under this node's CONFIGSYNC_VAR_DIR.
    _celery_dir = VAR_DIR / "celery"
    for _folder in ("broker", "control"):
        (_celery_dir / _folder).mkdir(parents=True, exist_ok=True)
    from configsync import broker as _broker

    _broker.register()
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "broker"),
        "data_folder_out": str(_celery_dir / "broker"),
        # kombu's default is "control" relative to the working directory (the repository).
        "control_folder": str(_celery_dir / "control"),
        "store_processed": False,
        # How often an idle worker lists the folder (kombu's default, 1 s, delayed every push
        # on write by half a second on average; a listing costs well under a millisecond).
        "polling_interval": 0.05,
    }
# Two queues: "celery" (the default: beat's cycles, retries, callbacks, snapshots) and "push" (the
# push-only cycles a committed write enqueues, routed by settings.celery.route_task), so a push
# never waits behind a sync cycle. A worker started without -Q consumes both; the Procfile runs
# `worker -Q celery` beside a `pusher` (`-Q push --pool=solo`: the task runs in the process that
# took the message).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES: dict[str, dict[str, str]] = {"celery": {}, "push": {}}
CELERY_TASK_ROUTES = ("settings.celery.route_task",)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connections around every task unless this is set; it
# then recycles them every this many tasks, and configsync.tasks closes broken or expired ones
# before and after each task as Django does around a request (close_old_connections).
CELERY_DB_REUSE_MAX = 1000

# --- REST framework ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # API keys first: its authenticate_header makes unauthenticated calls answer 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "configsync.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Scopes: read for safe methods, write otherwise; admins hold all (configsync.api.permissions).
    "DEFAULT_PERMISSION_CLASSES": ["configsync.api.permissions.HasScope"],
    "DEFAULT_SCHEMA_CLASS": "configsync.api.openapi.AutoSchema",
    # Bodies: nesting bounded, NUL and lone surrogates refused (configsync.api.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "configsync.api.parsers.StorableJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["configsync.api.throttling.CallerRateThrottle"],
    "EXCEPTION_HANDLER": "configsync.api.exceptions.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.rate("CONFIGSYNC_THROTTLE_ANON", "60/min"),
        "user": env.rate("CONFIGSYNC_THROTTLE_USER", "6000/min"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "configsync API",
    "DESCRIPTION": "Critical configuration, encrypted at rest and replicated between nodes.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The docs pages load Swagger UI and Redoc from this node's static files (the sidecar package,
    # installed with the other dependencies): no CDN, no "@latest" script in a page holding an admin
    # session, and the docs work offline. No online validator either (Swagger UI's default).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # Conflict.winner, Conflict.resolution and a resolve request's choice share one enum.
    "ENUM_NAME_OVERRIDES": {
        "ConflictSideEnum": "configsync.replication.models.conflicts.Conflict.Winner"
    },
    # 401/403 on every authenticated operation, and the links between operations.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "configsync.api.openapi.postprocess",
    ],
}

# --- configsync (read only through configsync/conf.py) -------------------------------------------
# Each default is configsync.conf.DEFAULTS' (the one place it is written); these only validate.


def _app_default(name: str) -> Any:
    """The app's default of ``CONFIGSYNC_<name>`` (a copy when it is a list)."""
    value = _APP_DEFAULTS[name]
    return list(value) if isinstance(value, list) else value


CONFIGSYNC_NODE_ID = env.str("CONFIGSYNC_NODE_ID", default=_app_default("NODE_ID"))
if CONFIGSYNC_NODE_ID and not _NODE_ID.fullmatch(CONFIGSYNC_NODE_ID):
    raise ConfigurationError("CONFIGSYNC_NODE_ID must be 1-64 letters, digits, '_', '.' or '-'")
# Set means "these are the keys": set but empty ("" or ",") never falls back to the development
# key (unlike other optional variables, where blank means unset): a deploy that meant to pass keys
# and passed nothing must not encrypt with a generated one.
CONFIGSYNC_ENCRYPTION_KEYS = env.list(
    "CONFIGSYNC_ENCRYPTION_KEYS", default=_app_default("ENCRYPTION_KEYS")
)
if env.is_set("CONFIGSYNC_ENCRYPTION_KEYS"):
    validate_key_texts(CONFIGSYNC_ENCRYPTION_KEYS)
CONFIGSYNC_DEV_KEY_FILE = VAR_DIR / "dev-encryption.key"
CONFIGSYNC_SYNC_SECRET = env.str("CONFIGSYNC_SYNC_SECRET", default=_app_default("SYNC_SECRET"))
CONFIGSYNC_PEERS = env.list("CONFIGSYNC_PEERS", default=_app_default("PEERS"))
try:
    parse_peers(CONFIGSYNC_PEERS)
except ValidationError as exc:
    raise ConfigurationError(exc.messages[0]) from None
CONFIGSYNC_SYNC_INTERVAL_SECONDS = env.int(
    "CONFIGSYNC_SYNC_INTERVAL_SECONDS",
    default=_app_default("SYNC_INTERVAL_SECONDS"),
    minimum=0,
    maximum=SYNC_INTERVAL_MAX_SECONDS,
    unit="seconds",
)
CONFIGSYNC_DEPLOYMENT_MODE = env.choice(
    "CONFIGSYNC_DEPLOYMENT_MODE",
    DEPLOYMENT_MODES,
    default=_app_default("DEPLOYMENT_MODE"),
)
CONFIGSYNC_ENV_FILE = env.str("CONFIGSYNC_ENV_FILE", default=_app_default("ENV_FILE"))
CONFIGSYNC_ENV_MANAGE = env.str("CONFIGSYNC_ENV_MANAGE", default=_app_default("ENV_MANAGE"))
_mode, _, _argument = CONFIGSYNC_ENV_MANAGE.partition(":")
if _mode.strip().lower() not in {"all", "prefix", "allow"} or (
    _mode.strip().lower() != "all" and not _argument.strip(" ,")
):
    raise ConfigurationError("CONFIGSYNC_ENV_MANAGE must be all, prefix:PREFIX or allow:NAME,NAME")
CONFIGSYNC_ENV_STRIP_PREFIX = env.bool(
    "CONFIGSYNC_ENV_STRIP_PREFIX", default=_app_default("ENV_STRIP_PREFIX")
)
CONFIGSYNC_ENV_SECRET_URL_CREDENTIALS = env.bool(
    "CONFIGSYNC_ENV_SECRET_URL_CREDENTIALS", default=_app_default("ENV_SECRET_URL_CREDENTIALS")
)
# The one secret rule (configsync.sensitivity); default in configsync.conf: set only when given.
if env.is_set("CONFIGSYNC_SECRET_URL_CREDENTIALS"):
    CONFIGSYNC_SECRET_URL_CREDENTIALS = env.bool("CONFIGSYNC_SECRET_URL_CREDENTIALS")
# Lists whose defaults live in configsync.conf: set only when given, so the default stays there.
for _name in (
    "CONFIGSYNC_ENV_EXCLUDE",
    "CONFIGSYNC_ENV_SECRET_PATTERNS",
    "CONFIGSYNC_SECRET_PATTERNS",
):
    if env.is_set(_name):
        globals()[_name] = env.list(_name)
CONFIGSYNC_DATA_CALLBACK_URL = env.url(
    "CONFIGSYNC_DATA_CALLBACK_URL",
    default=_app_default("DATA_CALLBACK_URL"),
    schemes=("http", "https"),
)
CONFIGSYNC_CLI_REVEAL = env.bool("CONFIGSYNC_CLI_REVEAL", default=_app_default("CLI_REVEAL"))
CONFIGSYNC_PUSH_ON_WRITE = env.bool(
    "CONFIGSYNC_PUSH_ON_WRITE", default=_app_default("PUSH_ON_WRITE")
)
# Defaults live in configsync.conf: set only when given.
if env.is_set("CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS"):
    CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = env.int(
        "CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS", minimum=1, maximum=86400, unit="seconds"
    )
if env.is_set("CONFIGSYNC_SYNC_BATCH_SIZE"):
    CONFIGSYNC_SYNC_BATCH_SIZE = env.int(
        "CONFIGSYNC_SYNC_BATCH_SIZE",
        minimum=1,
        maximum=_APP_DEFAULTS["MAX_PUSH_BATCH"],
        unit="changes",
    )
if env.is_set("CONFIGSYNC_SKEW_WARNING_SECONDS"):
    CONFIGSYNC_SKEW_WARNING_SECONDS = env.float(
        "CONFIGSYNC_SKEW_WARNING_SECONDS", minimum=0, maximum=86400, unit="seconds"
    )
# Test/dev only (the chaos harness): refused by settings.production and by check E033.
CONFIGSYNC_CLOCK_OFFSET_MS = env.int(
    "CONFIGSYNC_CLOCK_OFFSET_MS",
    default=_app_default("CLOCK_OFFSET_MS"),
    minimum=-86_400_000,
    maximum=86_400_000,
    unit="milliseconds",
)
if globals().get(
    "CONFIGSYNC_SKEW_WARNING_SECONDS", _APP_DEFAULTS["SKEW_WARNING_SECONDS"]
) > globals().get("CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS", _APP_DEFAULTS["MAX_CLOCK_SKEW_SECONDS"]):
    raise ConfigurationError(
        "CONFIGSYNC_SKEW_WARNING_SECONDS must not exceed CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS"
    )
CONFIGSYNC_VAR_DIR = VAR_DIR
CONFIGSYNC_R2_ENDPOINT_URL = env.url(
    "CONFIGSYNC_R2_ENDPOINT_URL",
    default=_app_default("R2_ENDPOINT_URL"),
    schemes=("http", "https"),
)
CONFIGSYNC_R2_BUCKET = env.str("CONFIGSYNC_R2_BUCKET", default=_app_default("R2_BUCKET"))
CONFIGSYNC_R2_ACCESS_KEY_ID = env.str(
    "CONFIGSYNC_R2_ACCESS_KEY_ID", default=_app_default("R2_ACCESS_KEY_ID")
)
CONFIGSYNC_R2_SECRET_ACCESS_KEY = env.str(
    "CONFIGSYNC_R2_SECRET_ACCESS_KEY", default=_app_default("R2_SECRET_ACCESS_KEY")
)
CONFIGSYNC_R2_REGION = env.str("CONFIGSYNC_R2_REGION", default=_app_default("R2_REGION"))
CONFIGSYNC_R2_PREFIX = env.str("CONFIGSYNC_R2_PREFIX", default=_app_default("R2_PREFIX"))
CONFIGSYNC_NATS_URL = env.url(
    "CONFIGSYNC_NATS_URL",
    default=_app_default("NATS_URL"),
    schemes=("nats", "tls", "ws", "wss"),
    example="nats://127.0.0.1:4222",
)
CONFIGSYNC_NATS_USER = env.str("CONFIGSYNC_NATS_USER", default=_app_default("NATS_USER"))
CONFIGSYNC_NATS_PASSWORD = env.str(
    "CONFIGSYNC_NATS_PASSWORD", default=_app_default("NATS_PASSWORD")
)
CONFIGSYNC_NATS_TOKEN = env.str("CONFIGSYNC_NATS_TOKEN", default=_app_default("NATS_TOKEN"))
CONFIGSYNC_NATS_USER_CREDENTIALS = env.str(
    "CONFIGSYNC_NATS_USER_CREDENTIALS", default=_app_default("NATS_USER_CREDENTIALS")
)
CONFIGSYNC_NATS_TLS_CA_FILE = env.str(
    "CONFIGSYNC_NATS_TLS_CA_FILE", default=_app_default("NATS_TLS_CA_FILE")
)
CONFIGSYNC_NATS_TLS_CERT_FILE = env.str(
    "CONFIGSYNC_NATS_TLS_CERT_FILE", default=_app_default("NATS_TLS_CERT_FILE")
)
CONFIGSYNC_NATS_TLS_KEY_FILE = env.str(
    "CONFIGSYNC_NATS_TLS_KEY_FILE", default=_app_default("NATS_TLS_KEY_FILE")
)
# The NATS stream's retention (0: without limit); defaults in configsync.conf.
if env.is_set("CONFIGSYNC_NATS_MAX_AGE_SECONDS"):
    CONFIGSYNC_NATS_MAX_AGE_SECONDS = env.int(
        "CONFIGSYNC_NATS_MAX_AGE_SECONDS", minimum=0, maximum=3650 * 86400, unit="seconds"
    )
if env.is_set("CONFIGSYNC_NATS_MAX_MSGS"):
    CONFIGSYNC_NATS_MAX_MSGS = env.int(
        "CONFIGSYNC_NATS_MAX_MSGS", minimum=0, maximum=10**12, unit="messages"
    )
if env.is_set("CONFIGSYNC_BUCKET_SNAPSHOT_EVERY"):
    CONFIGSYNC_BUCKET_SNAPSHOT_EVERY = env.int(
        "CONFIGSYNC_BUCKET_SNAPSHOT_EVERY", minimum=1, maximum=1_000_000, unit="segments"
    )
if env.is_set("CONFIGSYNC_BUCKET_RETENTION_DAYS"):
    CONFIGSYNC_BUCKET_RETENTION_DAYS = env.int(
        "CONFIGSYNC_BUCKET_RETENTION_DAYS", minimum=0, maximum=36500, unit="days"
    )
if env.is_set("CONFIGSYNC_HISTORY_VERSIONS"):
    CONFIGSYNC_HISTORY_VERSIONS = env.int(
        "CONFIGSYNC_HISTORY_VERSIONS", minimum=1, maximum=10_000, unit="versions"
    )
if env.is_set("CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS"):
    CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS = env.int(
        "CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS", minimum=0, maximum=30 * 86400, unit="seconds"
    )
if env.is_set("CONFIGSYNC_SNAPSHOT_KEEP"):
    CONFIGSYNC_SNAPSHOT_KEEP = env.int(
        "CONFIGSYNC_SNAPSHOT_KEEP", minimum=1, maximum=10_000, unit="snapshots"
    )
CONFIGSYNC_GROUP_ID = env.str("CONFIGSYNC_GROUP_ID", default=_app_default("GROUP_ID"))
if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,40}", CONFIGSYNC_GROUP_ID):
    raise ConfigurationError(
        "CONFIGSYNC_GROUP_ID must be 1 to 40 letters, digits, dots, dashes or underscores"
    )
_r2 = {
    "CONFIGSYNC_R2_ENDPOINT_URL": CONFIGSYNC_R2_ENDPOINT_URL,
    "CONFIGSYNC_R2_BUCKET": CONFIGSYNC_R2_BUCKET,
    "CONFIGSYNC_R2_ACCESS_KEY_ID": CONFIGSYNC_R2_ACCESS_KEY_ID,
    "CONFIGSYNC_R2_SECRET_ACCESS_KEY": CONFIGSYNC_R2_SECRET_ACCESS_KEY,
}
_r2_missing = [name for name, value in _r2.items() if not value]
if CONFIGSYNC_DEPLOYMENT_MODE.endswith("_R2") and _r2_missing:
    raise ConfigurationError(
        f"CONFIGSYNC_DEPLOYMENT_MODE {CONFIGSYNC_DEPLOYMENT_MODE} needs {_r2_missing[0]} "
        "(object storage)"
    )
if 0 < len(_r2_missing) < len(_r2):
    _r2_given = next(name for name in _r2 if name not in _r2_missing)
    raise ConfigurationError(
        f"{_r2_given} is set but {_r2_missing[0]} is not: set all CONFIGSYNC_R2_* variables or none"
    )

# With DEBUG on, error pages mask credential-bearing settings and every registered secret.
DEFAULT_EXCEPTION_REPORTER = "configsync.debug.SecretExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "configsync.debug.SecretExceptionReporterFilter"

# --- Logging: every handler masks secrets, whatever logger emits the record ---------------------
LOG_LEVEL = env.log_level("DJANGO_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_secrets": {"()": "configsync.logging.SecretMaskingFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "celery": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # redis-py adds its own unfiltered handler to this logger unless it already exists.
        "push_response": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
