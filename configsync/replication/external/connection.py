"""The external database's connection alias, kept to ``EXTERNAL_DATABASE_URL`` at run time.

``settings/base.py`` adds ``DATABASES["external"]`` only when the variable is set at start-up;
the setting may also be given later (``override_settings``, tests that make a fresh database per
test). :func:`external_alias` makes the alias reach what the setting names now: it adds the alias
to Django's connections, or replaces its settings (closing this thread's connection to the old
database) when the URL names another database. Nothing here ever puts the URL or the password in
a message.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from configsync.conf import app_settings
from configsync.replication.errors import TransportError

ENGINES = {
    "django.db.backends.postgresql": "PostgreSQL",
    "django.db.backends.sqlite3": "SQLite",
}
"""The engines the transport's SQL is written for, with their names for messages."""
_IDENTITY = ("ENGINE", "NAME", "HOST", "PORT", "USER", "PASSWORD")
"""The keys that decide which database (as whom) an alias reaches."""
_lock = threading.Lock()


def database_config(url: str) -> dict[str, Any]:
    """Django's ``DATABASES`` entry for ``url`` (PostgreSQL or SQLite), as ``settings/base.py``
    builds it, plus a connect timeout for PostgreSQL (``CONFIGSYNC_PEER_TIMEOUT_SECONDS``) unless
    the URL sets one. ``TransportError`` (never quoting the URL) when it is not one."""
    import environ

    problem = (
        "EXTERNAL_DATABASE_URL is not postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite:///PATH"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config: dict[str, Any] = environ.Env.db_url_config(url.strip())
    except Exception:
        raise TransportError(problem) from None
    if (
        config.get("ENGINE") not in ENGINES
        or not config.get("NAME")
        or config["NAME"] == ":memory:"
    ):
        raise TransportError(problem)
    options = config.setdefault("OPTIONS", {})
    if config["ENGINE"] == "django.db.backends.sqlite3":
        path = Path(config["NAME"])
        if not path.is_absolute():
            config["NAME"] = str(Path(settings.BASE_DIR) / path)
        options.update(
            {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    else:
        options.setdefault("connect_timeout", max(1, int(app_settings.PEER_TIMEOUT_SECONDS)))
    return config


def _same_database(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(str(a.get(key) or "") == str(b.get(key) or "") for key in _IDENTITY)


def alias_register(alias: str, url: str) -> None:
    """Make ``alias`` reach the database of ``url``: added when Django has no such alias,
    replaced when it reaches another database (or as another user); left alone otherwise."""
    config = database_config(url)
    with _lock:
        current = connections.settings.get(alias)
        if current is not None and _same_database(current, config):
            return
        # configure_settings fills Django's defaults in place (it wants "default" beside it).
        filled = connections.configure_settings(
            {DEFAULT_DB_ALIAS: connections.settings[DEFAULT_DB_ALIAS], alias: config}
        )[alias]
        connections.settings[alias] = filled
    _drop_stale(alias)


def alias_forget(alias: str) -> None:
    """Close this thread's connection of ``alias`` and remove the alias (tests, tear-down)."""
    alias_close(alias)
    with _lock:
        connections.settings.pop(alias, None)


def alias_close(alias: str) -> None:
    """Close this thread's connection of ``alias``, if it has one (the alias stays)."""
    if alias not in connections.settings:
        return
    try:
        connection = connections[alias]
    except Exception:
        return
    with contextlib.suppress(Exception):  # a broken connection is being dropped anyway
        connection.close()
    with contextlib.suppress(AttributeError):
        del connections[alias]


def _drop_stale(alias: str) -> None:
    """Drop this thread's connection of ``alias`` when it was opened with older settings."""
    wanted = connections.settings[alias]
    connection = connections[alias]
    if not _same_database(connection.settings_dict, wanted):
        alias_close(alias)


def external_alias(alias: str | None = None) -> str:
    """The alias to use for the external database, ready to connect.

    ``None`` or ``CONFIGSYNC_EXTERNAL_DATABASE_ALIAS``: registered or refreshed from
    ``EXTERNAL_DATABASE_URL`` (``TransportError`` when neither the setting nor the alias exists).
    Any other alias is used as ``DATABASES`` defines it.
    """
    configured = app_settings.EXTERNAL_DATABASE_ALIAS
    alias = alias or configured
    url = app_settings.external_database_url if alias == configured else ""
    if url:
        alias_register(alias, url)
    elif alias not in connections.settings:
        if alias == configured:
            raise TransportError("EXTERNAL_DATABASE_URL is not set: no external database")
        raise TransportError(f"no database alias {alias!r} in DATABASES")
    else:
        _drop_stale(alias)
    engine = connections.settings[alias].get("ENGINE")
    if engine not in ENGINES:
        raise TransportError("the external database must be PostgreSQL or SQLite")
    return alias


def external_connection(alias: str | None = None) -> BaseDatabaseWrapper:
    """This thread's connection of the external database (see :func:`external_alias`)."""
    return connections[external_alias(alias)]


def database_describe(alias: str) -> str:
    """``PostgreSQL db NAME on HOST:PORT`` / ``SQLite file PATH``: no user, no password."""
    config = connections.settings.get(alias)
    if config is None:
        return "not configured"
    kind = ENGINES.get(str(config.get("ENGINE")), "unsupported engine")
    if config.get("ENGINE") == "django.db.backends.sqlite3":
        return f"{kind} file {config.get('NAME')}"
    host = str(config.get("HOST") or "localhost")
    port = f":{config['PORT']}" if config.get("PORT") else ""
    return f"{kind} db {config.get('NAME')} on {host}{port}"


_SQLSTATES = {
    "28P01": "authentication failed (check the user and password of EXTERNAL_DATABASE_URL)",
    "28000": "authentication failed (this user may not connect)",
    "3D000": "no such database",
    "42501": "permission denied",
    "42P01": "the transport's tables are missing",
    "57014": "the query was cancelled (statement timeout)",
    "40001": "serialization failure (retried next cycle)",
    "40P01": "deadlock detected (retried next cycle)",
    "53300": "too many connections",
    "57P03": "the database is starting up or shutting down",
}


def failure_reason(exc: BaseException) -> str:
    """A short reason for a database error that never quotes the server's message (which may
    name the host, the user or a value): a known SQLSTATE's meaning, else the error's class."""
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return _SQLSTATES.get(sqlstate, f"database error (SQLSTATE {sqlstate})")
    name = type(exc).__name__
    module = type(cause).__module__
    if module.startswith("psycopg") and name == "OperationalError":
        return _connect_failure(str(cause).lower())
    if module.startswith("sqlite3"):
        text = str(cause).lower()
        if "unable to open" in text:
            return "cannot open the SQLite file"
        if "no such table" in text:
            return _SQLSTATES["42P01"]
        if "locked" in text or "busy" in text:
            return "the SQLite database is locked"
        if "readonly" in text or "read-only" in text:
            return "the SQLite database is read-only"
    return f"database error ({name})"


def _connect_failure(text: str) -> str:
    """What a failed PostgreSQL connection means (libpq's text is read, never quoted)."""
    if "password authentication failed" in text or "authentication failed" in text:
        return _SQLSTATES["28P01"]
    if "no password supplied" in text:
        return "authentication failed (the server wants a password)"
    if "role" in text and "does not exist" in text:
        return "authentication failed (no such user)"
    if "database" in text and "does not exist" in text:
        return "no such database"
    if "timeout" in text or "timed out" in text:
        return "cannot connect (timed out)"
    return "cannot connect (unreachable or refused)"
