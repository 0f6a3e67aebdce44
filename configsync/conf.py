"""The app's options, read from Django settings in one place.

Every ``CONFIGSYNC_*`` setting is read here and nowhere else, with its default, so the rest of the
code asks ``app_settings.SYNC_INTERVAL_SECONDS`` rather than ``getattr(settings, ...)``.
Each value is resolved on its first access and kept until the settings change through
``override_settings`` or pytest-django's ``settings`` fixture (:class:`AppSettings`), so tests that
change settings that way just work. Assigning ``django.conf.settings.X`` directly is not seen once
the option was read: code that sets options at run time (benchmarks, scripts) uses
``override_settings``. Why: resolving an unset option goes through ``LazySettings`` and an
``AttributeError`` (about 15 µs on the bench machine), and replication reads some per record.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_slug

DEPLOYMENT_MODES = ("LOCAL_ONLY", "LOCAL_EXTERNAL", "LOCAL_R2", "LOCAL_EXTERNAL_R2")
"""The values of ``CONFIGSYNC_DEPLOYMENT_MODE`` (empty: derived from the peers, see
``configsync.replication.selectors.status.deployment_mode``)."""
SYNC_INTERVAL_MAX_SECONDS = 86400
"""The largest ``CONFIGSYNC_SYNC_INTERVAL_SECONDS`` (one day); 0 turns the periodic sync off."""

DEFAULTS: dict[str, Any] = {
    "NODE_ID": "",
    "ENCRYPTION_KEYS": [],
    "DEV_KEY_FILE": None,
    "VAR_DIR": None,
    "SYNC_SECRET": "",
    "PEERS": [],
    "SYNC_INTERVAL_SECONDS": 30,
    "DEPLOYMENT_MODE": "",
    # Per data type overrides of the strategy matrix (configsync.replication.strategies).
    "SYNC_STRATEGIES": {},
    "R2_ENDPOINT_URL": "",
    "R2_BUCKET": "",
    "R2_ACCESS_KEY_ID": "",
    "R2_SECRET_ACCESS_KEY": "",
    # Object storage transport (configsync.replication.transports.bucket).
    "R2_REGION": "auto",
    "R2_PREFIX": "configsync",
    # A node writes a compacted snapshot of its state after this many segments of its own.
    "BUCKET_SNAPSHOT_EVERY": 200,
    # A writer deletes its own segments a snapshot covers once they are this old (0: never).
    "BUCKET_RETENTION_DAYS": 30,
    # NATS JetStream transport (configsync.replication.transports.nats): the server's URL
    # (unset: no NATS transport) and the connection options nats-py takes.
    "NATS_URL": "",
    "NATS_USER": "",
    "NATS_PASSWORD": "",
    "NATS_TOKEN": "",
    "NATS_USER_CREDENTIALS": "",
    "NATS_TLS_CA_FILE": "",
    "NATS_TLS_CERT_FILE": "",
    "NATS_TLS_KEY_FILE": "",
    # The stream's retention (0: without limit): how long, and how many, messages it keeps. A
    # node away longer catches up from a snapshot (configsync.replication.natsfollow).
    "NATS_MAX_AGE_SECONDS": 0,
    "NATS_MAX_MSGS": 0,
    # The replication group: media (database, bucket) are partitioned by it and refuse another's.
    "GROUP_ID": "default",
    # The external database's alias in DATABASES (configsync.replication.transports.database).
    "EXTERNAL_DATABASE_ALIAS": "external",
    "ENV_FILE": "",
    "DATA_CALLBACK_URL": "",
    "PUSH_ON_WRITE": True,
    # How far ahead of this node's clock a received timestamp may be; beyond it the change is
    # held (quarantined, retried every cycle). 60 s: far above NTP's error and a resumed laptop's
    # drift before NTP steps it, well inside the 300 s signature window (so any skew the peers
    # can still talk across is caught), and at most one minute of real time in which a skewed
    # clock can outrank a later write. README "Time, clocks and restores".
    "MAX_CLOCK_SKEW_SECONDS": 60,
    # Test/dev only: milliseconds added to this node's physical clock (configsync.replication.hlc
    # .physical_now_ms), to prove convergence under clock skew without touching the system clock.
    # Refused in production (settings.production and the system check configsync.E033).
    "CLOCK_OFFSET_MS": 0,
    # Above this measured skew with a peer, status/API/admin warn and conflicts are marked.
    "SKEW_WARNING_SECONDS": 2,
    # Deepest nesting of a JSON body or value accepted at any edge (REST, push, .env, CLI).
    "MAX_JSON_DEPTH": 64,
    "SYNC_BATCH_SIZE": 1000,
    "MAX_PUSH_BATCH": 1000,
    "SIGNATURE_MAX_AGE_SECONDS": 300,
    "PEER_TIMEOUT_SECONDS": 10,
    "ROTATION_BATCH_SIZE": 1000,
    # How many versions of each replicated record the history keeps (configsync.replication
    # .services.history); rollback can go back this far.
    "HISTORY_VERSIONS": 20,
    # Scheduled snapshots to the bucket in the R2 modes (configsync.snapshots): every this many
    # seconds (0: never), keeping this many per node.
    "SNAPSHOT_INTERVAL_SECONDS": 86400,
    "SNAPSHOT_KEEP": 14,
    # Per data type additions to the promotion rules (configsync.snapshots.promotion).
    "PROMOTION_RULES": {},
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
    # The one secret rule (configsync.sensitivity): key names stored as sensitive unless the
    # caller says otherwise, and whether a URL carrying credentials is too.
    "SECRET_PATTERNS": [
        "*_KEY",
        "*_SECRET",
        "*_TOKEN",
        "*_PASSWORD",
        "*_PASS",
        "*_DSN",
        "*_CREDENTIALS",
        "*_PRIVATE_KEY",
    ],
    "SECRET_URL_CREDENTIALS": True,
    "ENV_SECRET_URL_CREDENTIALS": True,
    "LOOKUP_CHECK_INTERVAL_SECONDS": 0.5,
    "LOOKUP_MAX_AGE_SECONDS": 300,
    # Declared settings (configsync.schema): key -> {type, default, help_text, category, ...}.
    "SCHEMA": {},
    # Whether the local operator holds the reveal right (get/export --reveal, run with secrets).
    "CLI_REVEAL": True,
    # Test only: "broken" makes this node decide conflicts wrongly on purpose, so the convergence
    # tests can prove they catch a wrong merge rule (configsync.replication.services.apply).
    # Read from the environment by settings.local and settings.test only; check E070 refuses it
    # anywhere else.
    "TEST_MERGE_RULE": "",
}

TEST_MERGE_RULES = ("", "broken")
"""The values of ``CONFIGSYNC_TEST_MERGE_RULE`` (empty: the real rule)."""


_settings_object = functools.partial(object.__getattribute__, settings, "_wrapped")
"""The object behind ``django.conf.settings`` now: every ``override_settings`` (and pytest-django
``settings`` fixture) change, deletions included, puts a new one in place and its end the old."""
_resolved: dict[str, Any] = {}
_resolved_for: list[object] = [None]
_generation = [0]


def settings_state() -> tuple[object, int]:
    """Something that differs whenever any setting may have changed (Django's settings object
    and the number of ``setting_changed`` signals so far), comparable with ``==``: work done
    ahead under the settings of then (a page of changes validated while the previous one was
    applied) is redone when this moved."""
    return (_settings_object(), _generation[0])


class AppSettings:
    """Attribute access to ``CONFIGSYNC_<NAME>`` settings with the defaults above.

    Resolved values are kept while Django's settings object stays the same one and no
    ``setting_changed`` signal came: an access is then two dictionary lookups, not
    ``LazySettings`` raising ``AttributeError`` for an unset option."""

    def __getattribute__(self, name: str) -> Any:
        if name in DEFAULTS:
            holder = _settings_object()
            if holder is not _resolved_for[0]:
                _resolved.clear()
                _resolved_for[0] = holder
            try:
                return _resolved[name]
            except KeyError:
                value = _resolved[name] = getattr(settings, f"CONFIGSYNC_{name}", DEFAULTS[name])
                return value
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"unknown configsync setting {name!r}")

    def reload(self) -> None:
        """Forget every resolved value: the next access reads the settings again."""
        _resolved.clear()

    @property
    def sync_interval_seconds(self) -> int:
        """``SYNC_INTERVAL_SECONDS`` as a whole number of seconds; 0 (or ``None``) turns the
        periodic sync off. The one place the option is parsed; check E031 reports a value set in
        code that is not a whole number from 0 to ``SYNC_INTERVAL_MAX_SECONDS``."""
        return int(self.SYNC_INTERVAL_SECONDS or 0)

    @property
    def external_database_url(self) -> str:
        """``EXTERNAL_DATABASE_URL`` (a project-level setting, not ``CONFIGSYNC_*``): the
        shared database of the database transport; ``""`` when there is none."""
        return str(getattr(settings, "EXTERNAL_DATABASE_URL", "") or "")

    @property
    def bucket_configured(self) -> bool:
        """Whether every ``CONFIGSYNC_R2_*`` setting the bucket transport needs is set."""
        return all(
            getattr(self, name)
            for name in ("R2_ENDPOINT_URL", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")
        )

    @property
    def nats_configured(self) -> bool:
        """Whether ``CONFIGSYNC_NATS_URL`` is set (the NATS transport joins every mode but
        ``LOCAL_ONLY``)."""
        return bool(self.NATS_URL)

    @property
    def var_dir(self) -> Path:
        """Directory for this node's local state (SQLite, broker, dev key, locks)."""
        configured = self.VAR_DIR
        path = Path(configured) if configured else Path(settings.BASE_DIR) / "var"
        path.mkdir(parents=True, exist_ok=True)
        return path


app_settings = AppSettings()


def app_settings_on_setting_changed(**kwargs: Any) -> None:
    """``setting_changed`` receiver (connected by ``configsync.receivers.signals_connect`` from
    ``ready()``): ``override_settings`` or the pytest ``settings`` fixture changed a setting, so
    every option is read again."""
    _generation[0] += 1
    app_settings.reload()


PEER_NAME_MAX_LENGTH = 64
PEER_URL_MAX_LENGTH = 500


_SINGLE_LABEL_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?::\d{1,5})?$")


def _validate_peer_url(url: str) -> None:
    """An http(s) URL, as Django's ``URLValidator`` takes one, or with a single-label host such
    as ``http://node-b:8000`` (a Compose service or a Kubernetes service name), which it refuses
    for want of a dot."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not _SINGLE_LABEL_HOST.match(parts.netloc):
            raise
        if parts.query or parts.fragment or any(c.isspace() for c in url):
            raise


def parse_peers(entries: list[str] | str) -> list[tuple[str, str]]:
    """Parse ``CONFIGSYNC_PEERS`` (``name=base_url`` items) into ``(name, base URL)`` pairs.

    The one parser of the option: the settings run it at start-up (so a malformed value stops
    every entry point) and the peer seeding service runs it on every beat. Raises
    ``ValidationError`` with one message naming the item by position, never quoting it (a URL
    may carry credentials): not ``name=base_url``, a name that is not a slug of at most 64
    characters, a URL that is not http(s), or two items with the same name or the same base URL.
    Needs no configured settings, so ``settings/`` can import it.
    """
    if isinstance(entries, str):
        entries = entries.split(",")
    parsed: list[tuple[str, str]] = []
    positions: list[int] = []
    for position, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        if not sep or not name or not url:
            raise ValidationError(f"CONFIGSYNC_PEERS: item {position} is not name=base_url")
        try:
            validate_slug(name)
            _validate_peer_url(url)
        except ValidationError:
            raise ValidationError(
                f"CONFIGSYNC_PEERS: item {position} needs a slug name and an http(s) URL"
            ) from None
        if len(name) > PEER_NAME_MAX_LENGTH or len(url) > PEER_URL_MAX_LENGTH:
            raise ValidationError(
                f"CONFIGSYNC_PEERS: item {position} is too long (name at most "
                f"{PEER_NAME_MAX_LENGTH} characters, URL at most {PEER_URL_MAX_LENGTH})"
            )
        for earlier, (other_name, other_url) in zip(positions, parsed, strict=True):
            if other_name == name:
                raise ValidationError(
                    f"CONFIGSYNC_PEERS: items {earlier} and {position} have the same name"
                )
            if other_url.lower() == url.lower():
                raise ValidationError(
                    f"CONFIGSYNC_PEERS: items {earlier} and {position} have the same base URL"
                )
        parsed.append((name, url))
        positions.append(position)
    return parsed
