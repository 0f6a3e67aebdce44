"""``configsync completion [SHELL]``: prints the shell code for tab completion of the
``configsync`` console script (argcomplete). ``eval "$(configsync completion bash)"`` in
``~/.bashrc``; the console script answers it without loading any settings."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from configsync.console import SHELLS, completion_code


def _completion(command: BaseCommand, options: dict[str, Any]) -> None:
    command.stdout.write(completion_code(options["shell"]), ending="")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``completion``."""
    parser = subparsers.add_parser(
        "completion",
        help="print the shell code for tab completion of the configsync command",
        description='Add  eval "$(configsync completion bash)"  to ~/.bashrc (zsh: ~/.zshrc).',
    )
    parser.add_argument("shell", nargs="?", choices=SHELLS, default="bash")
    parser.set_defaults(handler=_completion)
