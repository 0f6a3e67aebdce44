"""``configsync env import|export|diff|sync [--file PATH]``: the .env bridge by hand.

* ``env sync`` — the three-way merge (what the beat task runs); prints a summary.
* ``env import`` — the database follows the file; ``env export`` — the file follows the database.
* ``env diff`` — what ``env sync`` would change in each direction, changing nothing; sensitive
  values are masked (``********``); ``--json`` for machines.

Exit status: 0 when everything applied; 1 with a one-line reason on stderr when the run could not
happen (malformed file — with its line number —, unreadable or unwritable file, lock timeout;
nothing changed) *or* when some variables were skipped because their value does not parse as
their record's type (the others were applied; the summary is printed first).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from configsync.envbridge.service import (
    EnvBridgeReport,
    VariableChange,
    env_diff,
    env_export,
    env_import,
    env_sync,
)
from configsync.logging import MASK


def _shown(change: VariableChange, value: str | None) -> str:
    if value is None:
        return "(absent)"
    if change.sensitive:
        return MASK
    return json.dumps(value, ensure_ascii=False)


def _describe(change: VariableChange) -> str:
    where = f" (line {change.line})" if change.line else ""
    conflict = f" [conflict: {change.winner} newer]" if change.conflict else ""
    return (
        f"  {change.action:<11} {change.name}{where}: "
        f"{_shown(change, change.old)} -> {_shown(change, change.new)}{conflict}"
    )


def _finish(command: BaseCommand, report: EnvBridgeReport, options: dict[str, Any]) -> None:
    if options.get("json"):
        command.stdout.write(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        if report.dry_run or options.get("verbosity", 1) > 1:
            for title, changes in (
                ("file -> database", report.to_db),
                ("database -> file", report.to_file),
            ):
                if changes:
                    command.stdout.write(f"{title}:")
                    for change in changes:
                        command.stdout.write(_describe(change))
        command.stdout.write(report.summary())
    if report.skipped:
        reasons = "; ".join(str(s) for s in report.skipped)
        raise CommandError(
            f"{len(report.skipped)} variable(s) skipped, the rest applied: {reasons}",
            returncode=1,
        )


def _run(
    service: Callable[..., EnvBridgeReport], command: BaseCommand, options: dict[str, Any]
) -> None:
    _finish(command, service(path=options["file"]), options)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``env`` with ``import``, ``export``, ``diff`` and ``sync``."""
    env_parser = subparsers.add_parser(
        "env",
        help="keep a .env file and the database consistent (the .env bridge)",
        description="The .env bridge. The file is --file, else CONFIGSYNC_ENV_FILE.",
    )
    actions = env_parser.add_subparsers(dest="env_action", metavar="ACTION", required=True)
    for name, service, text in (
        ("sync", env_sync, "three-way merge of the file and the database"),
        ("import", env_import, "make the database follow the file"),
        ("export", env_export, "make the file follow the database"),
        ("diff", env_diff, "show what 'env sync' would change (secrets masked)"),
    ):
        parser = actions.add_parser(name, help=text, description=text)
        parser.add_argument(
            "--file", default=None, metavar="PATH", help="the .env file (CONFIGSYNC_ENV_FILE)"
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(handler=partial(_run, service))
