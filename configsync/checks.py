"""System checks (``configsync.E001`` ...), run by every management command and ``check --deploy``.

* E001 — no encryption key configured (and no development key possible: DEBUG is off).
* E002 — a configured encryption key (or the development key file) is malformed.
* E003 — duplicate encryption keys.
* W001 — running on the generated development key (generated here, once, if missing).
* W002 — stored values use key ids that no configured key has (database check: ``migrate``
  and ``check --database default`` run it); those values cannot be read on this node.
* E030 — ``CONFIGSYNC_PEERS`` is malformed (the settings refuse such an environment variable
  at start-up; this catches a value set in a settings module or by ``override_settings``).
* E031 — ``CONFIGSYNC_SYNC_INTERVAL_SECONDS`` is not a whole number from 0 to 86400, and E032 —
  ``CONFIGSYNC_DEPLOYMENT_MODE`` is not one of the modes (both likewise set in code).
* E033 — ``CONFIGSYNC_CLOCK_OFFSET_MS`` (a test/dev skew of the node's clock) is set under
  ``settings.production``.
* E050 — a declared setting (``configsync.schema``) is unusable: its default does not parse as
  its type (or is not among its choices, or fails its validators), its type is unknown, or a
  validator cannot be imported; E051 — ``CONFIGSYNC_SCHEMA`` itself is malformed.
* W050 — a stored value no longer parses under its declared type (database check); lookups
  still return it as stored.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ValidationError
from django.db import DatabaseError

from configsync.conf import (
    DEPLOYMENT_MODES,
    SYNC_INTERVAL_MAX_SECONDS,
    app_settings,
    parse_peers,
)
from configsync.crypto.errors import KeyringError
from configsync.crypto.keyring import get_keyring, key_text_problems


def checks_register() -> None:
    """Register the core's checks (from ``ConfigsyncConfig.ready()``; twice is a no-op)."""
    checks.register(check_encryption_keys, checks.Tags.security)
    checks.register(check_stored_key_ids, checks.Tags.database)
    checks.register(check_peers)
    checks.register(check_sync_settings)
    checks.register(check_clock_offset, checks.Tags.security)
    checks.register(check_declared_settings)
    checks.register(check_stored_declared_values, checks.Tags.database)


def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    configured = [text for text in app_settings.ENCRYPTION_KEYS if text.strip()]
    if not configured:
        if settings.DEBUG and app_settings.DEV_KEY_FILE:
            try:
                get_keyring()  # generates the development key once, with its own warning
            except KeyringError as exc:
                return [
                    checks.Error(
                        f"The development key in {app_settings.DEV_KEY_FILE} is unusable: {exc}",
                        hint="Delete the file to generate a new one (values encrypted with it "
                        "are then lost), or set CONFIGSYNC_ENCRYPTION_KEYS.",
                        id="configsync.E002",
                    )
                ]
            return [
                checks.Warning(
                    "CONFIGSYNC_ENCRYPTION_KEYS is not set: using the development key in "
                    f"{app_settings.DEV_KEY_FILE}.",
                    hint="Generate a key with `python manage.py configsync keys generate`.",
                    id="configsync.W001",
                )
            ]
        return [
            checks.Error(
                "CONFIGSYNC_ENCRYPTION_KEYS is not set.",
                hint="Generate a key with `python manage.py configsync keys generate` and set it.",
                id="configsync.E001",
            )
        ]
    return [
        checks.Error(message, id=check_id) for check_id, message in key_text_problems(configured)
    ]


def check_stored_key_ids(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    if not databases or "default" not in databases:
        return []
    from configsync.crypto.rotation import keys_status

    try:
        report = keys_status()
    except (KeyringError, DatabaseError):
        return []  # no usable keyring (E001/E002 say so) or tables not migrated yet
    unknown = report.unknown_key_ids
    if not unknown:
        return []
    count = sum(report.tokens_by_key_id[kid] for kid in unknown)
    return [
        checks.Warning(
            f"{count} stored encrypted value(s) use key id(s) {', '.join(unknown)}, which "
            "CONFIGSYNC_ENCRYPTION_KEYS does not contain; reading them fails on this node.",
            hint="Add the missing key to CONFIGSYNC_ENCRYPTION_KEYS (after the first), or "
            "`configsync keys status` to see which.",
            id="configsync.W002",
        )
    ]


def check_peers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        parse_peers(app_settings.PEERS)
    except ValidationError as exc:
        return [
            checks.Error(
                exc.messages[0],
                hint="Each item is name=base_url, e.g. cloud=https://cfg.example.com; "
                "names and URLs are unique.",
                id="configsync.E030",
            )
        ]
    return []


def check_sync_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E031 and E032, with the messages the settings give for the environment variables.

    ``None`` passes both, as it reads today: no periodic sync, and the derived mode."""
    problems: list[checks.CheckMessage] = []
    interval = app_settings.SYNC_INTERVAL_SECONDS
    if interval is not None and (
        not isinstance(interval, int)
        or isinstance(interval, bool)
        or not 0 <= interval <= SYNC_INTERVAL_MAX_SECONDS
    ):
        problems.append(
            checks.Error(
                "CONFIGSYNC_SYNC_INTERVAL_SECONDS must be a whole number of seconds from 0 to "
                f"{SYNC_INTERVAL_MAX_SECONDS}",
                hint="0 turns the periodic sync off (peers still sync on write).",
                id="configsync.E031",
            )
        )
    mode = app_settings.DEPLOYMENT_MODE
    if mode not in ("", None, *DEPLOYMENT_MODES):
        problems.append(
            checks.Error(
                f"CONFIGSYNC_DEPLOYMENT_MODE must be one of {', '.join(DEPLOYMENT_MODES)}",
                hint="Leave it empty to derive it: LOCAL_EXTERNAL with peers, else LOCAL_ONLY.",
                id="configsync.E032",
            )
        )
    return problems


def check_clock_offset(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E033: ``CONFIGSYNC_CLOCK_OFFSET_MS`` (a test/dev skew of this node's clock) is set under
    ``settings.production``. A node running on a skewed clock on purpose would order its writes
    wrongly against every peer; only the chaos harness and local experiments may set it."""
    offset = app_settings.CLOCK_OFFSET_MS
    module = str(getattr(settings, "SETTINGS_MODULE", "") or "")
    if offset and module.rsplit(".", 1)[-1] == "production":
        return [
            checks.Error(
                "CONFIGSYNC_CLOCK_OFFSET_MS is a test/development switch and must not be set in "
                "production",
                hint="Unset it (or set it to 0); fix the machine's clock with NTP instead.",
                id="configsync.E033",
            )
        ]
    return []


def check_declared_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E050 for each unusable declaration, naming its key; E051 for a malformed schema."""
    from django.core.exceptions import ImproperlyConfigured

    from configsync.schema import declarations

    try:
        declared = declarations()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="Each entry is KEY: {type, default, help_text, category, sensitive, "
                "choices, validators}.",
                id="configsync.E051",
            )
        ]
    return [
        checks.Error(
            problem,
            hint="Fix the declaration (CONFIGSYNC_SCHEMA or configsync.declare).",
            obj=key,
            id="configsync.E050",
        )
        for key, declaration in declared.items()
        for problem in declaration.problems()
    ]


def check_stored_declared_values(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """W050 for each stored value that does not parse under its key's declared type (the
    message names the key and the types, never the value)."""
    if not databases or "default" not in databases:
        return []
    from django.core.exceptions import ImproperlyConfigured

    from configsync.crypto.errors import DecryptionError
    from configsync.models import SystemConfig
    from configsync.schema import declarations
    from configsync.value_types import ValueType, value_parse

    try:
        declared = {key: d for key, d in declarations().items() if d.value_type in ValueType.values}
        records = list(SystemConfig.objects.filter(key__in=list(declared)))
    except (ImproperlyConfigured, DatabaseError):
        return []  # E051 says so, or the tables are not migrated yet
    problems: list[checks.CheckMessage] = []
    for record in records:
        declaration = declared[record.key]
        try:
            raw = record.raw_value()
        except (DecryptionError, KeyringError):
            continue  # unreadable here: W002 names the missing key
        try:
            value_parse(raw, declaration.value_type)
        except ValidationError:
            problems.append(
                checks.Warning(
                    f"The stored value of {record.key} (stored as {record.value_type}) does not "
                    f"parse as its declared type {declaration.value_type}.",
                    hint="Set it again with the declared type, or reset it to the default in "
                    "the admin.",
                    obj=record.key,
                    id="configsync.W050",
                )
            )
    return problems
