"""Which variables the bridge manages, how their names map to config keys, and which are secret.

Options (``configsync.conf``; each also read from the environment variable of the same name):

* ``CONFIGSYNC_ENV_MANAGE`` — ``all`` (default), ``prefix:APP_`` (only names starting with
  ``APP_``) or ``allow:A,B,C`` (only those names).
* ``CONFIGSYNC_ENV_STRIP_PREFIX`` — with ``prefix:``, map ``APP_DEBUG`` to the key ``DEBUG``
  (default off: the config key *is* the variable name).
* ``CONFIGSYNC_ENV_EXCLUDE`` — shell-style patterns of names never managed. The default lists
  the variables that configure *this node* (``DJANGO_*``, ``CONFIGSYNC_*``, ``DATABASE_URL``,
  ``REDIS_URL``...): replicating them would point every node at one node's database, and the
  bridge file may be the very ``.env`` Django reads at start-up. Set it to empty to manage them.
* The secret rule is the one every entry point uses (``configsync.sensitivity``): a name matching
  ``CONFIGSYNC_SECRET_PATTERNS`` makes a variable a sensitive record.
  ``CONFIGSYNC_ENV_SECRET_PATTERNS``, when set (in Django settings or the environment), overrides
  those patterns for the bridge alone. ``CONFIGSYNC_ENV_SECRET_URL_CREDENTIALS`` (default on)
  also makes a value that is a URL with credentials (``scheme://user:pass@host``) sensitive. The
  rule decides on creation and can only ever *raise* a record to sensitive: a record an operator
  marked sensitive stays so.

A config key that is not a valid variable name (``a.b:c`` is a valid key) is never exported.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from django.conf import settings

from configsync.conf import app_settings
from configsync.envbridge.errors import EnvConfigError
from configsync.sensitivity import (
    NAME_PATTERN,
    NO_RULE,
    URL_CREDENTIALS,
    SensitivityDecision,
    secret_name_pattern,
    url_has_credentials,
)

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in (value or []) if str(part).strip()]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BridgePolicy:
    """The managed set, the name↔key mapping and the secret rule, fixed for one run."""

    mode: str = "all"
    prefix: str = ""
    allow: frozenset[str] = frozenset()
    strip_prefix: bool = False
    exclude: tuple[str, ...] = ()
    secret_patterns: tuple[str, ...] | None = None
    """The bridge's own name patterns; ``None``: the general ``CONFIGSYNC_SECRET_PATTERNS``."""
    secret_url_credentials: bool = True

    @classmethod
    def from_settings(cls) -> BridgePolicy:
        """Build the policy from ``app_settings``; :class:`EnvConfigError` when malformed."""
        raw = str(app_settings.ENV_MANAGE or "all").strip()
        mode, _, arg = raw.partition(":")
        mode = mode.strip().lower()
        prefix, allow = "", frozenset[str]()
        if mode == "prefix":
            prefix = arg.strip()
            if not prefix:
                raise EnvConfigError("CONFIGSYNC_ENV_MANAGE=prefix: needs a prefix, e.g. APP_")
        elif mode == "allow":
            allow = frozenset(_as_list(arg))
            if not allow:
                raise EnvConfigError("CONFIGSYNC_ENV_MANAGE=allow: needs names, e.g. allow:A,B")
        elif mode != "all":
            raise EnvConfigError(
                "CONFIGSYNC_ENV_MANAGE must be 'all', 'prefix:PREFIX' or 'allow:NAME,NAME'"
            )
        return cls(
            mode=mode,
            prefix=prefix,
            allow=allow,
            strip_prefix=bool(app_settings.ENV_STRIP_PREFIX) and mode == "prefix",
            exclude=tuple(_as_list(app_settings.ENV_EXCLUDE)),
            secret_patterns=(
                tuple(_as_list(app_settings.ENV_SECRET_PATTERNS))
                if hasattr(settings, "CONFIGSYNC_ENV_SECRET_PATTERNS")
                else None
            ),
            secret_url_credentials=bool(app_settings.ENV_SECRET_URL_CREDENTIALS),
        )

    # --- the managed set and the mapping --------------------------------------------------------
    def manages(self, name: str) -> bool:
        """Whether the variable ``name`` is the bridge's to keep in step."""
        if not ENV_NAME_RE.fullmatch(name):
            return False
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude):
            return False
        if self.mode == "prefix":
            return name.startswith(self.prefix) and (
                not self.strip_prefix or len(name) > len(self.prefix)
            )
        if self.mode == "allow":
            return name in self.allow
        return True

    def key_for(self, name: str) -> str:
        """The config key of the managed variable ``name``."""
        if self.strip_prefix:
            return name[len(self.prefix) :]
        return name

    def name_for(self, key: str) -> str | None:
        """The variable name of the config key ``key``, or ``None`` when it is not managed."""
        name = self.prefix + key if self.strip_prefix else key
        return name if self.manages(name) else None

    # --- the secret rule ------------------------------------------------------------------------
    def secret_decision(self, name: str, value: str) -> SensitivityDecision:
        """The one secret rule (``configsync.sensitivity``) with the bridge's overrides."""
        pattern = secret_name_pattern(name, self.secret_patterns)
        if pattern:
            return SensitivityDecision(sensitive=True, rule=NAME_PATTERN, pattern=pattern)
        if self.secret_url_credentials and url_has_credentials(value):
            return SensitivityDecision(sensitive=True, rule=URL_CREDENTIALS)
        return SensitivityDecision(sensitive=False, rule=NO_RULE)

    def is_secret(self, name: str, value: str) -> bool:
        """Whether a variable should be a sensitive record, by its name or its value."""
        return self.secret_decision(name, value).sensitive
