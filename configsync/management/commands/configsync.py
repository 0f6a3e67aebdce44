"""``python manage.py configsync SUBCOMMAND``: the command line fixed by the contract.

Subcommands live in CLI modules of every installed app (see :func:`cli_modules`); this command
only discovers and dispatches them.
Any ``ValidationError`` or configsync error becomes a one-line reason on stderr and exit 1.
"""

from __future__ import annotations

import importlib
import io
import logging
import pkgutil
import sys
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from configsync.actor import CLI, acting
from configsync.cli.config import cli_actor
from configsync.crypto.errors import ConfigsyncError
from configsync.validation import validate_storable_texts


def cli_modules() -> list[str]:
    """Every CLI module of the installed apps, sorted: a module named ``cli`` or a module of a
    package named ``cli``, at any depth of an app's package (``configsync/cli/config.py``,
    ``configsync/replication/cli/sync.py``, ``providers/cli.py``). Each defines
    ``register(subparsers)``; an app adds subcommands by adding such a module, nothing else.
    """
    found: list[str] = []
    for config in apps.get_app_configs():
        package = importlib.import_module(config.name)
        if not hasattr(package, "__path__"):
            continue
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{config.name}."):
            parts = info.name.split(".")
            if "migrations" in parts or "management" in parts:
                continue
            if (parts[-1] == "cli" and not info.ispkg) or (len(parts) > 1 and parts[-2] == "cli"):
                found.append(info.name)
    return sorted(found)


def validation_reason(exc: ValidationError) -> str:
    """One line out of a ``ValidationError``: ``field: message; field: message``."""
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Manage configsync: settings, providers, keys, sync, the .env bridge and more."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        for name in cli_modules():
            importlib.import_module(name).register(subparsers)

    def check(self, *args: Any, **kwargs: Any) -> None:
        """System checks before every subcommand: an error still stops it; warnings are left to
        ``runserver``, ``migrate`` and ``check``, which show them at start, instead of being
        repeated on every call (W001, the development key: the keyring says so in one line
        when a subcommand encrypts with it)."""
        shown = self.stderr
        self.stderr = OutputWrapper(io.StringIO())
        try:
            super().check(*args, **kwargs)
        finally:
            self.stderr = shown

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            if options.get("traceback"):
                raise
            sys.stderr.write(f"configsync: {exc}\n")
            sys.exit(exc.returncode)

    def handle(self, *args: Any, **options: Any) -> None:
        handler = options["handler"]
        # A subcommand prints its own outcome; the services' INFO lines (one per sync run, …)
        # are for the worker's log. ``-v 2`` shows them.
        quiet = options.get("verbosity", 1) < 2
        configsync_logger = logging.getLogger("configsync")
        level = configsync_logger.level
        if quiet:
            configsync_logger.setLevel(max(level, logging.WARNING))
        try:
            self._dispatch(handler, options)
        finally:
            configsync_logger.setLevel(level)

    def _dispatch(self, handler: Any, options: dict[str, Any]) -> None:
        try:
            # An argument that is not UTF-8 arrives with lone surrogates, which no query can
            # carry: refused here for every subcommand (Django's own path options excepted).
            validate_storable_texts(
                **{
                    name: value
                    for name, value in options.items()
                    if isinstance(value, str) and name not in ("settings", "pythonpath")
                }
            )
            with acting(actor=cli_actor(), via=CLI):
                handler(self, options)
        except ValidationError as exc:
            raise CommandError(validation_reason(exc), returncode=1) from None
        except ConfigsyncError as exc:
            raise CommandError(str(exc), returncode=1) from None
