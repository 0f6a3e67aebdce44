"""System checks of replication.

* W020 — peers are configured but ``CONFIGSYNC_SYNC_SECRET`` is not: sync requests cannot be
  signed, and this node refuses every peer's requests.
* E020 — ``CONFIGSYNC_NODE_ID`` is not 1-64 letters, digits, ``_``, ``.`` or ``-``: it is part of
  every HLC timestamp, and peers would refuse this node's changes.
* E021 — ``CONFIGSYNC_SYNC_STRATEGIES`` overrides an unknown data type, or names an unknown
  option, direction or strategy (one error each, naming it); the matrix then ignores it whole.
* E022 — the deployment mode (configured, or stored by ``configsync mode set``: database check)
  needs a transport whose settings are missing (a bucket mode without ``CONFIGSYNC_R2_*``).
* W021 — the deployment mode needs the bucket transport, which this version does not have.
* E023 — ``CONFIGSYNC_TEST_MERGE_RULE`` (a test-only switch that makes this node decide
  conflicts wrongly on purpose) is set under a settings module other than ``settings.local`` and
  ``settings.test``, or to an unknown value. ``settings.production`` refuses the variable at
  start-up; this catches a value set in code.
* E024 — the NATS transport's settings cannot work (one error each): ``CONFIGSYNC_NATS_URL`` is
  set without ``CONFIGSYNC_SYNC_SECRET`` (every message is authenticated with it), or with a
  ``CONFIGSYNC_GROUP_ID`` that cannot name a stream (dots); ``CONFIGSYNC_NATS_MAX_AGE_SECONDS`` or
  ``CONFIGSYNC_NATS_MAX_MSGS`` is not a whole number from 0 (set in code: the environment is
  validated at start-up); a TLS key without its certificate, or a ``CONFIGSYNC_NATS_TLS_*`` or
  ``CONFIGSYNC_NATS_USER_CREDENTIALS`` file that does not exist; a user without a password.
* W040 — stored records fail the validation every write passes (database check: ``migrate`` and
  ``check --database default`` run it): rows stored before received versions were validated, or
  loaded with raw fixtures; reading their value fails. Names records and rules, never values.
"""

from __future__ import annotations

import re
from typing import Any

from django.core import checks
from django.db import DatabaseError

from configsync.conf import app_settings


def checks_register() -> None:
    """Register replication's checks (from ``ConfigsyncConfig.ready()``; twice is a no-op)."""
    checks.register(check_sync_secret, checks.Tags.security)
    checks.register(check_node_id)
    checks.register(check_stored_records, checks.Tags.database)
    checks.register(check_sync_strategies)
    checks.register(check_mode_transports)
    checks.register(check_stored_mode_transports, checks.Tags.database)
    checks.register(check_test_merge_rule)
    checks.register(check_nats)


def check_nats(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E024 (see the module docstring); names settings and files' settings, never a value."""
    from pathlib import Path

    problems: list[str] = []
    for name in ("NATS_MAX_AGE_SECONDS", "NATS_MAX_MSGS"):
        value = getattr(app_settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"CONFIGSYNC_{name} must be a whole number from 0 (0: no limit)")
    if app_settings.nats_configured:
        if not app_settings.SYNC_SECRET:
            problems.append(
                "CONFIGSYNC_NATS_URL is set but CONFIGSYNC_SYNC_SECRET is not: every message on "
                "the stream is authenticated with it"
            )
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,40}", str(app_settings.GROUP_ID or "")):
            problems.append(
                "CONFIGSYNC_GROUP_ID must be letters, digits, '-' or '_' to name a NATS stream"
            )
        if app_settings.NATS_TLS_KEY_FILE and not app_settings.NATS_TLS_CERT_FILE:
            problems.append(
                "CONFIGSYNC_NATS_TLS_KEY_FILE is set without CONFIGSYNC_NATS_TLS_CERT_FILE"
            )
        for name in (
            "NATS_TLS_CA_FILE",
            "NATS_TLS_CERT_FILE",
            "NATS_TLS_KEY_FILE",
            "NATS_USER_CREDENTIALS",
        ):
            path = str(getattr(app_settings, name) or "")
            if path and not Path(path).is_file():
                problems.append(f"CONFIGSYNC_{name} names a file that does not exist")
        if app_settings.NATS_USER and not app_settings.NATS_PASSWORD:
            problems.append("CONFIGSYNC_NATS_USER is set without CONFIGSYNC_NATS_PASSWORD")
    return [
        checks.Error(
            problem,
            hint="See the README's NATS section; `configsync nats status` shows the stream.",
            id="configsync.E024",
        )
        for problem in problems
    ]


TEST_SETTINGS_MODULES = ("settings.local", "settings.test")
"""The settings modules under which ``CONFIGSYNC_TEST_MERGE_RULE`` may be set (E023)."""


def check_test_merge_rule(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings

    from configsync.conf import TEST_MERGE_RULES

    rule = app_settings.TEST_MERGE_RULE or ""
    if not rule:
        return []
    module = getattr(settings, "SETTINGS_MODULE", "") or ""
    if rule not in TEST_MERGE_RULES or module not in TEST_SETTINGS_MODULES:
        return [
            checks.Error(
                "CONFIGSYNC_TEST_MERGE_RULE is a test-only switch that breaks replication on "
                "purpose: allowed only under settings.local and settings.test, as one of "
                f"{', '.join(r for r in TEST_MERGE_RULES if r)}.",
                hint="Unset CONFIGSYNC_TEST_MERGE_RULE.",
                id="configsync.E023",
            )
        ]
    return []


def check_sync_strategies(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from configsync.replication import registry, strategies

    return [
        checks.Error(message, id="configsync.E021")
        for message in strategies.override_errors(
            app_settings.SYNC_STRATEGIES, registry.data_types()
        )
    ]


def _transport_messages(mode: str, *, database: bool = False) -> list[checks.CheckMessage]:
    from configsync.replication.selectors.mode import transport_problems

    errors, warnings = transport_problems(mode, peers_in_database=database)
    return [
        *(
            checks.Error(message, hint="Set every CONFIGSYNC_R2_* variable.", id="configsync.E022")
            for message in errors
        ),
        *(checks.Warning(message, id="configsync.W021") for message in warnings),
    ]


def check_mode_transports(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return _transport_messages(str(app_settings.DEPLOYMENT_MODE or ""))


def check_stored_mode_transports(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The same for a mode stored by ``configsync mode set`` (when it differs)."""
    from configsync.replication.selectors.mode import deployment_mode_stored

    try:
        stored = deployment_mode_stored()
    except DatabaseError:  # tables not migrated yet
        return []
    if not stored or stored == str(app_settings.DEPLOYMENT_MODE or ""):
        return []
    try:
        return _transport_messages(stored, database=True)
    except DatabaseError:
        return []


def check_sync_secret(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if app_settings.PEERS and not app_settings.SYNC_SECRET:
        return [
            checks.Warning(
                "CONFIGSYNC_PEERS is set but CONFIGSYNC_SYNC_SECRET is not: replication is off.",
                hint="Set the same CONFIGSYNC_SYNC_SECRET on every node of the replication group.",
                id="configsync.W020",
            )
        ]
    return []


NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}\Z")


def check_node_id(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    configured = str(app_settings.NODE_ID or "")
    if configured and not NODE_ID_PATTERN.match(configured):
        return [
            checks.Error(
                "CONFIGSYNC_NODE_ID must be 1-64 letters, digits, '_', '.' or '-'.",
                id="configsync.E020",
            )
        ]
    return []


def check_stored_records(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from configsync.replication.selectors.validity import stored_records_invalid

    try:
        invalid = stored_records_invalid(limit=20)
    except DatabaseError:  # tables not migrated yet
        return []
    return [
        checks.Warning(
            f"Stored {label} {key!r} fails validation ({reasons}); reading its value fails.",
            hint="Set a valid value (`configsync set`, the admin or the API) or delete it.",
            id="configsync.W040",
        )
        for label, key, reasons in invalid
    ]
