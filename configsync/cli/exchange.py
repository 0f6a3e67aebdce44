"""``configsync export|import|run``: the configuration to stdout, from a file, into a process.

* ``export [--format env|json|yaml] [--category NAME] [--reveal]`` prints the settings; sensitive
  values are masked unless ``--reveal``.
* ``import PATH [--format env|json|yaml] [--dry-run] [--json]`` reads the same formats (the
  format from the extension when not given; ``PATH`` ``-`` is standard input and needs
  ``--format``). Everything is validated first: a malformed line or entry changes nothing and is
  named by its line number. A masked value (``********``) is never stored: the entry is skipped,
  named on stderr, and the exit status is 1 (the other entries were applied, as ``env import``).
* ``run [--category NAME] [--no-secrets] -- COMMAND [ARGS...]`` starts COMMAND with the settings in
  its environment (over the inherited one), writes no file and exits with COMMAND's status (128+N
  when it was killed by signal N; 127 when it cannot be started). No command: exit 2.

The reveal right: ``export --reveal`` and ``run`` with sensitive settings show plaintext, so they
need the same right as ``get --reveal`` — the local operator's, unless the node turns it off with
``CONFIGSYNC_CLI_REVEAL=False`` — and every reveal is audited (``cli:<login>``). Without the
right they are refused (exit 1); ``run --no-secrets`` then starts COMMAND with the plain settings
only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from django.core.management.base import BaseCommand, CommandError

from configsync.cli import REVEAL_REFUSED, cli_may_reveal
from configsync.cli.config import cli_actor
from configsync.selectors.system_config import system_config_list
from configsync.services.exchange import (
    FORMATS,
    Format,
    config_environment,
    config_export,
    config_import,
)

EXTENSIONS: dict[str, Format] = {
    ".env": "env",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
}


def _export(command: BaseCommand, options: dict[str, Any]) -> None:
    if options["reveal"] and not cli_may_reveal():
        raise CommandError(f"export --reveal refused: {REVEAL_REFUSED}", returncode=1)
    text = config_export(
        fmt=options["format"],
        category=options["category"],
        reveal=options["reveal"],
        actor=cli_actor(),
    )
    command.stdout.write(text, ending="")


def _format_of(path: str, given: str | None) -> Format:
    if given:
        return cast(Format, given)
    found = EXTENSIONS.get(Path(path).suffix.lower())
    if found is None and Path(path).name.startswith(".env"):
        found = "env"
    if found is None:
        raise CommandError(
            f"cannot tell the format of {path!r} from its name; give --format env|json|yaml",
            returncode=1,
        )
    return found


def _import(command: BaseCommand, options: dict[str, Any]) -> None:
    path = options["path"]
    fmt = _format_of(path, options["format"])
    if path == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8"
            raise CommandError(f"{path}: cannot read: {reason}", returncode=1) from None
    report = config_import(
        text=text, fmt=fmt, path=path, dry_run=options["dry_run"], actor=cli_actor()
    )
    if options["json"]:
        command.stdout.write(json.dumps(report.as_dict(), indent=2))
    else:
        if report.dry_run:
            for title, keys in (("create", report.created), ("update", report.updated)):
                for key in keys:
                    command.stdout.write(f"  {title:<7} {key}")
        command.stdout.write(report.summary())
    if report.skipped:
        reasons = "; ".join(f"line {n}: {k}: {r}" for n, k, r in report.skipped)
        done = "nothing applied (dry run)" if report.dry_run else "the rest applied"
        raise CommandError(
            f"{len(report.skipped)} entr{'y' if len(report.skipped) == 1 else 'ies'} skipped, "
            f"{done}: {reasons}",
            returncode=1,
        )


def _run(command: BaseCommand, options: dict[str, Any]) -> None:
    argv = list(options["child_command"])
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CommandError(
            "run: no command given; usage: configsync run [--category NAME] -- COMMAND [ARGS...]",
            returncode=2,
        )
    include_sensitive = not options["no_secrets"]
    if include_sensitive and not cli_may_reveal():
        secret = system_config_list(category=options["category"], is_sensitive=True).count()
        if secret:
            raise CommandError(
                f"run refused: {secret} sensitive setting(s) would be revealed to the command, "
                f"and {REVEAL_REFUSED}; --no-secrets runs it with the plain settings only",
                returncode=1,
            )
    variables = config_environment(
        category=options["category"], include_sensitive=include_sensitive, actor=cli_actor()
    )
    environment = {**os.environ, **variables}
    command.stdout.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        completed = subprocess.run(argv, env=environment, check=False)
    except OSError as exc:
        raise CommandError(
            f"run: cannot start {argv[0]!r}: {exc.strerror}", returncode=127
        ) from None
    code = completed.returncode
    if code < 0:
        code = 128 - code
    if code:
        sys.exit(code)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export``, ``import`` and ``run``."""
    export_parser = subparsers.add_parser(
        "export",
        help="print the settings (sensitive values masked unless --reveal)",
        description="Print the settings to standard output in env, json or yaml.",
    )
    export_parser.add_argument("--format", choices=FORMATS, default="json")
    export_parser.add_argument("--category", default=None, metavar="NAME")
    export_parser.add_argument(
        "--reveal", action="store_true", help="sensitive values in clear (audited)"
    )
    export_parser.set_defaults(handler=_export)

    import_parser = subparsers.add_parser(
        "import",
        help="create or update settings from an export file",
        description="Read settings in env, json or yaml; validate everything, then apply.",
    )
    import_parser.add_argument("path", metavar="PATH", help="the file, or '-' for stdin")
    import_parser.add_argument(
        "--format", choices=FORMATS, default=None, help="default: from PATH's extension"
    )
    import_parser.add_argument(
        "--dry-run", action="store_true", help="show what would change, change nothing"
    )
    import_parser.add_argument("--json", action="store_true", help="machine-readable output")
    import_parser.set_defaults(handler=_import)

    run_parser = subparsers.add_parser(
        "run",
        help="start a command with the settings in its environment",
        description="Start COMMAND with the settings as environment variables; no file is "
        "written. Usage: run [--category NAME] -- COMMAND [ARGS...]",
    )
    run_parser.add_argument("--category", default=None, metavar="NAME")
    run_parser.add_argument(
        "--no-secrets", action="store_true", help="leave the sensitive settings out"
    )
    run_parser.add_argument("child_command", nargs=argparse.REMAINDER, metavar="COMMAND")
    run_parser.set_defaults(handler=_run)
