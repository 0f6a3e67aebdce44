"""The app's options, read from Django settings in one place.

Every ``CONFIGSYNC_*`` setting is read here and nowhere else, with its default, so the rest of the
code asks ``app_settings.SYNC_INTERVAL_SECONDS`` rather than ``getattr(settings, ...)``.
Values are read on every access, so ``override_settings`` in tests just works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "NODE_ID": "",
    "ENCRYPTION_KEYS": [],
    "DEV_KEY_FILE": None,
    "VAR_DIR": None,
    "SYNC_SECRET": "",
    "PEERS": [],
    "SYNC_INTERVAL_SECONDS": 30,
    "DEPLOYMENT_MODE": "",
    "ENV_FILE": "",
    "DATA_CALLBACK_URL": "",
    "PUSH_ON_WRITE": True,
    # How far ahead of this node's clock a received timestamp may be; beyond it the change is
    # held (quarantined, retried every cycle). 60 s: far above NTP's error and a resumed laptop's
    # drift before NTP steps it, well inside the 300 s signature window (so any skew the peers
    # can still talk across is caught), and at most one minute of real time in which a skewed
    # clock can outrank a later write. README "Time, clocks and restores".
    "MAX_CLOCK_SKEW_SECONDS": 60,
    # Above this measured skew with a peer, status/API/admin warn and conflicts are marked.
    "SKEW_WARNING_SECONDS": 2,
    # Deepest nesting of a JSON body or value accepted at any edge (REST, push, .env, CLI).
    "MAX_JSON_DEPTH": 64,
    "SYNC_BATCH_SIZE": 500,
    "MAX_PUSH_BATCH": 1000,
    "SIGNATURE_MAX_AGE_SECONDS": 300,
    "PEER_TIMEOUT_SECONDS": 10,
    "ROTATION_BATCH_SIZE": 200,
    "MAX_VALUE_BYTES": 64 * 1024,
    # The .env bridge (configsync.envbridge.policy documents each).
    "ENV_MANAGE": "all",
    "ENV_STRIP_PREFIX": False,
    "ENV_EXCLUDE": [
        "DJANGO_*",
        "CONFIGSYNC_*",
        "DATABASE_URL",
        "TEST_DATABASE_URL",
        "EXTERNAL_DATABASE_URL",
        "REDIS_URL",
        "PORT",
    ],
    "ENV_SECRET_PATTERNS": ["*_KEY", "*_SECRET", "*_TOKEN", "*_PASSWORD"],
    "ENV_SECRET_URL_CREDENTIALS": True,
    "LOOKUP_CHECK_INTERVAL_SECONDS": 0.5,
    "LOOKUP_MAX_AGE_SECONDS": 300,
}


class AppSettings:
    """Attribute access to ``CONFIGSYNC_<NAME>`` settings with the defaults above."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown configsync setting {name!r}")
        return getattr(settings, f"CONFIGSYNC_{name}", DEFAULTS[name])

    @property
    def var_dir(self) -> Path:
        """Directory for this node's local state (SQLite, broker, dev key, locks)."""
        configured = getattr(settings, "CONFIGSYNC_VAR_DIR", None)
        path = Path(configured) if configured else Path(settings.BASE_DIR) / "var"
        path.mkdir(parents=True, exist_ok=True)
        return path


app_settings = AppSettings()
