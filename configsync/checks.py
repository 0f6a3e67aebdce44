"""System checks (``configsync.E001`` ...), run by every management command and ``check --deploy``.

* E001 — no encryption key configured (and no development key possible: DEBUG is off).
* E002 — a configured encryption key is malformed.
* E003 — duplicate encryption keys.
* W001 — running on the generated development key.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from configsync.conf import app_settings
from configsync.crypto.errors import KeyringError
from configsync.crypto.keyring import parse_key


@checks.register(checks.Tags.security)
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    configured = [text for text in app_settings.ENCRYPTION_KEYS if text.strip()]
    if not configured:
        if settings.DEBUG and app_settings.DEV_KEY_FILE:
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
    errors: list[checks.CheckMessage] = []
    kids: list[str] = []
    for position, text in enumerate(configured, start=1):
        try:
            kids.append(parse_key(text).kid)
        except KeyringError as exc:
            errors.append(
                checks.Error(
                    f"CONFIGSYNC_ENCRYPTION_KEYS entry {position} is malformed: {exc}",
                    id="configsync.E002",
                )
            )
    if len(set(kids)) != len(kids):
        errors.append(
            checks.Error(
                "CONFIGSYNC_ENCRYPTION_KEYS lists the same key twice.", id="configsync.E003"
            )
        )
    return errors
