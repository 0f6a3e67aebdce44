"""The environment, read and validated in one place, and the one way a bad value stops start-up.

Every settings module reads variables only through :class:`Environment` (``settings.base.env``).
Each reader parses strictly and raises :class:`ConfigurationError` (an ``ImproperlyConfigured``)
whose message names the variable and says what is wrong, never quoting the value (it may be a
secret or hold credentials). Each settings module runs inside :func:`startup_guard`, which turns
any ``ImproperlyConfigured`` into one line on standard error and exit status 3, whatever the
entry point: ``manage.py``, ``gunicorn settings.wsgi``, ``celery worker`` and ``celery beat`` all
import the settings, and none of them prints a traceback. Status 3 is gunicorn's "worker failed
to boot", so its master stops instead of respawning workers that cannot start.

django-environ still reads the ``.env`` file and parses database URLs; its casts are too lax for
start-up validation (``bool("maybe")`` is ``False``, a list of ``","`` is two empty names) and its
errors are tracebacks, hence the readers here.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

EXIT_STATUS = 3
"""Exit status of a process stopped by a configuration error (gunicorn: "failed to boot")."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_RATE = re.compile(r"^[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)\Z")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DATABASE_ENGINES = {
    "django.db.backends.postgresql": "postgres",
    "django.db.backends.sqlite3": "sqlite",
}

BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss", "configsync-fs", "memory")
"""Celery broker URL schemes ``CELERY_BROKER_URL`` accepts (RabbitMQ, Redis, the embedded one)."""
LOCAL_BROKER_SCHEMES = frozenset({"configsync-fs", "memory"})
"""Schemes of brokers without a server: nothing follows ``scheme://``."""

REQUIRED: Any = object()
"""Default of a variable that must be set."""


class ConfigurationError(ImproperlyConfigured):
    """A variable is missing or malformed; the message names it and never holds its value."""


def configuration_error_line(exc: BaseException) -> str:
    """The one line printed for a configuration error (the first line of its message)."""
    text = str(exc).strip().splitlines()
    return f"configsync: configuration error: {text[0] if text else type(exc).__name__}\n"


def stop_on_configuration_error(exc: BaseException) -> None:
    """Print the one line for ``exc`` and exit with :data:`EXIT_STATUS`."""
    sys.stderr.write(configuration_error_line(exc))
    sys.stderr.flush()
    raise SystemExit(EXIT_STATUS)


@contextlib.contextmanager
def startup_guard() -> Iterator[None]:
    """Run a settings module's body: ``ImproperlyConfigured`` ends the process with one line."""
    try:
        yield
    except ImproperlyConfigured as exc:
        stop_on_configuration_error(exc)


_PLACEHOLDER = re.compile(r"placeholder|change[-_ ]?me|replace[-_ ]?me", re.IGNORECASE)


def is_placeholder(value: builtins.str) -> bool:
    """Whether a secret says it is an example rather than a secret: its text, or the bytes of its
    base64url form (an encryption key such as ``base64("placeholder-key-...")``), reads
    "placeholder", "change me" or "replace me". Such a value has been published (compose.yaml,
    a tutorial): a production node must not run on it."""
    if _PLACEHOLDER.search(value):
        return True
    text = value.strip()
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return False
    return bool(_PLACEHOLDER.search(decoded.decode("latin-1")))


class Environment:
    """Typed, strict readers of environment variables; :class:`ConfigurationError` otherwise.

    A variable that is absent, or set to an empty (or blank) value, takes its default — shells,
    Compose files and process managers often write ``NAME=`` for "not set" — except a required
    one (no default), for which blank is an error: an empty secret is no secret.
    """

    def __init__(self, environ_: Mapping[builtins.str, builtins.str] | None = None) -> None:
        self.environ = os.environ if environ_ is None else environ_

    def __getattr__(self, attr: builtins.str) -> Any:
        """django-environ's other readers (``json``, ``path`` ...), with its errors as ours."""
        lenient = environ.Env()
        lenient.ENVIRON = self.environ  # type: ignore[assignment]
        lax = getattr(lenient, attr)
        if not callable(lax):
            return lax

        def reader(name: builtins.str, *args: Any, **kwargs: Any) -> Any:
            try:
                return lax(name, *args, **kwargs)
            except ImproperlyConfigured:
                raise ConfigurationError(f"Set the {name} environment variable") from None
            except (ValueError, TypeError):
                raise ConfigurationError(f"{name} is malformed") from None

        return reader

    # --- plumbing --------------------------------------------------------------------------
    def is_set(self, name: builtins.str) -> builtins.bool:
        return name in self.environ

    def raw(self, name: builtins.str, default: Any = REQUIRED) -> Any:
        """The variable's text, else ``default``; ``ConfigurationError`` when required."""
        value = self.environ.get(name)
        if value is not None and value.strip():
            return value
        if default is not REQUIRED:
            return default
        if value is None:
            raise ConfigurationError(f"Set the {name} environment variable")
        raise ConfigurationError(f"{name} is empty: set a value or remove the variable")

    # --- scalars ---------------------------------------------------------------------------
    def str(self, name: builtins.str, default: Any = REQUIRED) -> builtins.str:
        """The value as given (a secret is not trimmed: that would change it)."""
        return self.raw(name, default)  # type: ignore[no-any-return]

    def bool(self, name: builtins.str, default: Any = REQUIRED) -> builtins.bool:
        """``true/false``, ``yes/no``, ``on/off`` or ``1/0`` (any case), nothing else."""
        value = self.raw(name, default)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigurationError(f"{name} must be true or false (also yes/no, on/off, 1/0)")

    def int(
        self,
        name: builtins.str,
        default: Any = REQUIRED,
        *,
        minimum: builtins.int = -(2**63),
        maximum: builtins.int = 2**63 - 1,
        unit: builtins.str = "",
    ) -> builtins.int:
        """A whole number from ``minimum`` to ``maximum``."""
        value = self.raw(name, default)
        what = f"a whole number{' of ' + unit if unit else ''}"
        if minimum > -(2**63) or maximum < 2**63 - 1:
            what += f" from {minimum} to {maximum}"
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                raise ConfigurationError(f"{name} must be {what}")
            number = int(text)
        if not minimum <= number <= maximum:
            raise ConfigurationError(f"{name} must be {what}")
        return number

    def float(
        self,
        name: builtins.str,
        default: Any = REQUIRED,
        *,
        minimum: builtins.float = -math.inf,
        maximum: builtins.float = math.inf,
        unit: builtins.str = "",
    ) -> builtins.float:
        """A finite number from ``minimum`` to ``maximum``."""
        value = self.raw(name, default)
        what = f"a finite number{' of ' + unit if unit else ''}"
        if math.isfinite(minimum) or math.isfinite(maximum):
            what += f" from {minimum:g} to {maximum:g}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{name} must be {what}") from None
        if not math.isfinite(number) or not minimum <= number <= maximum:
            raise ConfigurationError(f"{name} must be {what}")
        return number

    def choice(
        self, name: builtins.str, choices: Iterable[builtins.str], default: Any = REQUIRED
    ) -> builtins.str:
        """One of ``choices`` (compared exactly); an empty value is the default."""
        allowed = list(choices)
        value = self.raw(name, default)
        text = value.strip() if isinstance(value, str) else value
        if text == "" and default is not REQUIRED:
            return default
        if text not in allowed:
            raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}")
        return text

    def log_level(self, name: builtins.str, default: builtins.str) -> builtins.str:
        value = str(self.raw(name, default)).strip().upper()
        if value not in _LOG_LEVELS:
            raise ConfigurationError(f"{name} must be one of {', '.join(_LOG_LEVELS)}")
        return value

    def rate(self, name: builtins.str, default: builtins.str) -> builtins.str:
        """A REST framework throttle rate: ``<requests>/<s|min|hour|day>``, e.g. ``60/min``."""
        value = str(self.raw(name, default)).strip()
        if not _RATE.fullmatch(value):
            raise ConfigurationError(
                f"{name} must be a rate such as 60/min (a positive count per s, min, hour or day)"
            )
        return value

    # --- lists -----------------------------------------------------------------------------
    def list(self, name: builtins.str, default: Any = REQUIRED) -> builtins.list[builtins.str]:
        """Comma-separated items, each stripped; an empty item (``a,,b`` or ``,``) is an error."""
        value = self.raw(name, default)
        if isinstance(value, builtins.list):
            return value
        items = [item.strip() for item in builtins.str(value).split(",")]
        for position, item in enumerate(items, start=1):
            if not item:
                raise ConfigurationError(f"{name}: item {position} is empty")
        return items

    # --- structured values -----------------------------------------------------------------
    def url(
        self,
        name: builtins.str,
        default: Any = REQUIRED,
        *,
        schemes: Iterable[builtins.str],
        example: builtins.str = "https://HOST/PATH",
    ) -> builtins.str:
        """An absolute URL with one of ``schemes`` and a host; empty means unset."""
        value = str(self.raw(name, default)).strip()
        if not value:
            return value
        problem = f"{name} must be a URL such as {example}"
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ConfigurationError(problem) from None
        if parts.scheme not in tuple(schemes) or not parts.hostname:
            raise ConfigurationError(problem)
        return value

    def database(
        self, name: builtins.str, default: Any, *, base_dir: Path
    ) -> dict[builtins.str, Any]:
        """A database URL (PostgreSQL or SQLite file), parsed by django-environ."""
        value = str(self.raw(name, default)).strip()
        problem = f"{name} must be postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite:///PATH"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Engine not recognized": reported below
                config: dict[builtins.str, Any] = environ.Env.db_url_config(value)
        except Exception:
            raise ConfigurationError(problem) from None
        kind = _DATABASE_ENGINES.get(str(config.get("ENGINE", "")))
        if kind is None or not config.get("NAME") or config["NAME"] == ":memory:":
            raise ConfigurationError(problem)
        if kind == "sqlite":
            path = Path(config["NAME"])
            if not path.is_absolute():
                config["NAME"] = str(base_dir / path)
        return config

    def redis_url(self, name: builtins.str, default: builtins.str = "") -> builtins.str:
        """A redis-py URL (``redis://``, ``rediss://``, ``unix://``); empty means unset."""
        value = str(self.raw(name, default)).strip()
        if not value:
            return value
        from redis.connection import parse_url

        problem = f"{name} must be redis://[:PASSWORD@]HOST[:PORT][/DB], rediss:// or unix://"
        try:
            parse_url(value)
        except (ValueError, TypeError):
            raise ConfigurationError(problem) from None
        parts = urlsplit(value)
        database = parts.path.lstrip("/")
        if parts.scheme != "unix" and database and not database.isdigit():
            raise ConfigurationError(problem)
        return value

    def broker_url(self, name: builtins.str, default: builtins.str = "") -> builtins.str:
        """A Celery broker URL whose transport configsync supports; empty means unset.

        Schemes: :data:`BROKER_SCHEMES`. A network broker needs a host (and a numeric port when
        one is given); a Redis broker's database is a number; ``configsync-fs://`` (the embedded
        broker, its folders under ``CONFIGSYNC_VAR_DIR``) and ``memory://`` (one process only, for
        tests) take nothing after the scheme.
        """
        value = builtins.str(self.raw(name, default)).strip()
        if not value:
            return value
        problem = (
            f"{name} must be a URL such as amqp://USER:PASSWORD@HOST:5672/VHOST or "
            f"redis://HOST:6379/0 (schemes: {', '.join(BROKER_SCHEMES)})"
        )
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ConfigurationError(problem) from None
        if "://" not in value or parts.scheme not in BROKER_SCHEMES:
            raise ConfigurationError(problem)
        if parts.scheme in LOCAL_BROKER_SCHEMES:
            if parts.netloc or parts.path.strip("/") or parts.query:
                raise ConfigurationError(problem)
            return value
        if not parts.hostname:
            raise ConfigurationError(problem)
        if parts.scheme in {"redis", "rediss"}:
            database = parts.path.lstrip("/")
            if database and not database.isdigit():
                raise ConfigurationError(problem)
        return value

    def directory(self, name: builtins.str, default: Path, *, base_dir: Path | None = None) -> Path:
        """A directory, created when missing and proven writable; an absolute path (a relative
        one is taken from ``base_dir``). An error names the variable and the OS reason."""
        path = Path(self.raw(name, default)).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"{name}: cannot create the directory ({exc.strerror or type(exc).__name__})"
            ) from None
        try:
            # os.access is no proof: root passes it on a read-only filesystem.
            with tempfile.TemporaryFile(dir=path, prefix=".configsync-write-test-"):
                pass
        except OSError as exc:
            raise ConfigurationError(
                f"{name}: the directory is not writable ({exc.strerror or type(exc).__name__})"
            ) from None
        return path
