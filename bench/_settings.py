"""Settings of the lookup and REST benchmarks: the test settings plus django-constance.

django-constance is configured only here (it is a benchmark peer, not a dependency of the app).
The database is ``BENCH_DATABASE_URL``, else ``TEST_DATABASE_URL``, else a SQLite file under
var/; Redis is used when ``REDIS_URL`` is set. Throttling stays on (with rates no benchmark
reaches) so both REST views pay for it.
"""

import os

from settings.test import *  # noqa: F403
from settings.test import INSTALLED_APPS, REST_FRAMEWORK, VAR_DIR, database_config, env

_url = env.str(
    "BENCH_DATABASE_URL",
    default=os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{VAR_DIR / 'bench-lookups.sqlite3'}",
)
DATABASES = {"default": database_config(_url)}
INSTALLED_APPS = [*INSTALLED_APPS, "constance", "constance.backends.database"]
ROOT_URLCONF = "bench._urls"
CONSTANCE_BACKEND = "constance.backends.database.DatabaseBackend"
CONSTANCE_CONFIG = {"BENCH_VALUE": ("https://example.com/v1", "benchmark value")}
CONSTANCE_REDIS_CONNECTION = env.str("REDIS_URL", default="") or {}
CONSTANCE_REDIS_PREFIX = "bench-constance:"
REST_FRAMEWORK_THROTTLE_DISABLED = False
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "100000000/min", "user": "100000000/min"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
