# PYTHON_ARGCOMPLETE_OK
"""``configsync``: the console script that ``pip install`` puts on ``PATH``.

``configsync SUBCOMMAND ...`` is ``python manage.py configsync SUBCOMMAND ...``: the same
subcommands (every installed app's CLI modules), options, output and exit statuses, with
``configsync`` as the program name. The settings module is ``$DJANGO_SETTINGS_MODULE``, else
``settings.local`` (as with ``manage.py``); ``--settings`` and ``--pythonpath`` work as with any
management command.

Two subcommands need no settings, so they work before anything is configured (and under
``settings.production``, which refuses to load without keys): ``keys generate`` and
``completion [bash|zsh|fish|tcsh|powershell]``, which prints the shell code that makes tab
completion work (argcomplete; ``eval "$(configsync completion bash)"``). Completing a word
loads the settings and builds the parser, exactly as a run would, and prints nothing else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

DEFAULT_SETTINGS = "settings.local"
"""The settings module when ``DJANGO_SETTINGS_MODULE`` is not set."""

PROG = "configsync"
SHELLS = ("bash", "zsh", "fish", "tcsh", "powershell")
CONFIGURATION_ERROR_STATUS = 3
"""Exit status of a configuration error, as ``settings.environment`` (and ``manage.py``) use."""


def completion_code(shell: str = "bash") -> str:
    """The shell code that registers tab completion of the ``configsync`` command."""
    import argcomplete

    return argcomplete.shellcode([PROG], shell=shell)


def _completing() -> bool:
    return "_ARGCOMPLETE" in os.environ


def _pre_options(argv: Sequence[str]) -> None:
    """Apply ``--settings`` and ``--pythonpath`` before the settings load (as Django's
    ``execute_from_command_line`` does): the full parser needs the apps, hence the settings."""
    from django.core.management.base import CommandParser, handle_default_options

    parser = CommandParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--settings")
    parser.add_argument("--pythonpath")
    options, _ = parser.parse_known_args(list(argv))
    handle_default_options(options)


def _configuration_error(exc: BaseException) -> NoReturn:
    text = str(exc).strip().splitlines()
    sys.stderr.write(
        f"configsync: configuration error: {text[0] if text else type(exc).__name__}\n"
    )
    sys.exit(CONFIGURATION_ERROR_STATUS)


def run(argv: Sequence[str]) -> None:
    """Run ``configsync *argv``; exits non-zero (``SystemExit``) on failure."""
    argv = list(argv)
    if argv[:1] == ["completion"] and len(argv) <= 2:
        shell = argv[1] if len(argv) == 2 else "bash"
        if shell not in SHELLS:
            sys.stderr.write(f"configsync: completion: choose one of {', '.join(SHELLS)}\n")
            sys.exit(2)
        sys.stdout.write(completion_code(shell))
        return
    if argv == ["keys", "generate"] and not _completing():
        from configsync.crypto.keyring import generate_key

        sys.stdout.write(generate_key() + "\n")
        return

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    if _completing():
        # Whatever loading the settings says (a development-key warning, a configuration
        # error) would land in the middle of the user's command line.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    import django
    from django.core.exceptions import ImproperlyConfigured

    from configsync.crypto.errors import ConfigsyncError

    try:
        _pre_options(argv)
        django.setup()
        _run_command(argv)
    except ImproperlyConfigured as exc:
        _configuration_error(exc)
    except ConfigsyncError as exc:
        # An unusable key or an unreadable value met by any command (messages never hold values).
        sys.stderr.write(f"configsync: {exc}\n")
        sys.exit(1)


def _run_command(argv: list[str]) -> None:
    import argcomplete
    from django.db import connections

    from configsync.management.commands.configsync import Command

    class ConsoleCommand(Command):
        """The management command, named ``configsync`` in usage and help."""

        def add_arguments(self, parser: Any) -> None:
            parser.prog = PROG
            super().add_arguments(parser)

    command = ConsoleCommand()
    # As BaseCommand.run_from_argv: a usage error prints the usage and exits 2.
    command._called_from_command_line = True  # type: ignore[attr-defined]
    parser = command.create_parser(PROG, PROG)
    argcomplete.autocomplete(parser)  # returns at once unless the shell is completing
    options = vars(parser.parse_args(argv))
    args = options.pop("args", ())
    try:
        command.execute(*args, **options)
    finally:
        connections.close_all()


def main() -> None:
    """The ``configsync`` console script (``[project.scripts]`` in ``pyproject.toml``)."""
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
