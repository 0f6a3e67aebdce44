"""``python manage.py configsync SUBCOMMAND``: the command line fixed by the contract.

Subcommands live in ``configsync/cli/<area>.py``; this command only discovers and dispatches them.
Any ``ValidationError`` or configsync error becomes a one-line reason on stderr and exit 1.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

import configsync.cli
from configsync.crypto.errors import ConfigsyncError


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
        for module_info in sorted(
            pkgutil.iter_modules(configsync.cli.__path__), key=lambda m: m.name
        ):
            module = importlib.import_module(f"configsync.cli.{module_info.name}")
            module.register(subparsers)

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
        try:
            handler(self, options)
        except ValidationError as exc:
            raise CommandError(validation_reason(exc), returncode=1) from None
        except ConfigsyncError as exc:
            raise CommandError(str(exc), returncode=1) from None
