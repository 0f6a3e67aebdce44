"""The one secret rule: whether a setting is stored as sensitive when its caller does not say.

Used by every entry point that creates a setting (the CLI, the REST API, the admin, the .env
bridge): a caller's explicit choice wins; otherwise a key whose name matches one of
``CONFIGSYNC_SECRET_PATTERNS`` (shell-style, case-insensitive: ``*_KEY``, ``*_SECRET``, …) or a
value that is a URL carrying credentials (``scheme://user:password@host``) is sensitive. The
decision names the rule that applied, so responses can say why.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import urlsplit

from configsync.conf import app_settings

EXPLICIT = "explicit"
NAME_PATTERN = "name"
URL_CREDENTIALS = "url_credentials"
NO_RULE = "none"


@dataclass(frozen=True)
class SensitivityDecision:
    """``sensitive``, and ``rule``: ``explicit`` (the caller said), ``name`` (``pattern``
    matched the key), ``url_credentials`` (the value is a URL with credentials) or ``none``."""

    sensitive: bool
    rule: str
    pattern: str = ""

    def describe(self) -> str:
        """One line saying why (never the value)."""
        if self.rule == EXPLICIT:
            return "sensitive: as asked" if self.sensitive else "plain: as asked"
        if self.rule == NAME_PATTERN:
            return f"sensitive: the name matches {self.pattern}"
        if self.rule == URL_CREDENTIALS:
            return "sensitive: the value is a URL carrying credentials"
        return "plain: no secret rule applies"


def url_has_credentials(value: object) -> bool:
    """``scheme://user:pass@host/...`` or ``scheme://token@host/...``."""
    if not isinstance(value, str) or "://" not in value or "@" not in value:
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return bool(parts.scheme) and (parts.username is not None or parts.password is not None)


def secret_name_pattern(key: str, patterns: tuple[str, ...] | None = None) -> str:
    """The first of ``patterns`` (default ``CONFIGSYNC_SECRET_PATTERNS``) ``key`` matches, or
    ``""``."""
    upper = key.upper()
    for pattern in patterns if patterns is not None else tuple(app_settings.SECRET_PATTERNS):
        if fnmatch.fnmatchcase(upper, str(pattern).upper()):
            return str(pattern)
    return ""


def sensitivity_decide(
    *, key: str, value: object, explicit: bool | None = None
) -> SensitivityDecision:
    """Whether ``key`` = ``value`` is stored as sensitive: ``explicit`` when given, else the
    name patterns, else URL credentials (``CONFIGSYNC_SECRET_URL_CREDENTIALS``), else plain."""
    if explicit is not None:
        return SensitivityDecision(sensitive=bool(explicit), rule=EXPLICIT)
    pattern = secret_name_pattern(key)
    if pattern:
        return SensitivityDecision(sensitive=True, rule=NAME_PATTERN, pattern=pattern)
    if app_settings.SECRET_URL_CREDENTIALS and url_has_credentials(value):
        return SensitivityDecision(sensitive=True, rule=URL_CREDENTIALS)
    return SensitivityDecision(sensitive=False, rule=NO_RULE)
