"""``configsync mode show [--json]``, ``configsync mode set MODE [--json]``: this node's deployment
mode and the effective strategy matrix (``--json``: the document of ``GET /api/v1/sync/strategies``,
after the change for ``set``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from configsync.cli.config import cli_actor
from configsync.conf import DEPLOYMENT_MODES
from configsync.replication.selectors.strategies import sync_strategies
from configsync.replication.services.mode import deployment_mode_set


def register(subparsers: argparse._SubParsersAction) -> None:
    mode = subparsers.add_parser(
        "mode", help="Show or set this node's deployment mode (stored here, never replicated)."
    )
    actions = mode.add_subparsers(dest="mode_action", required=True)
    show = actions.add_parser("show", help="The mode and the effective strategy matrix.")
    show.add_argument("--json", action="store_true", help="Machine-readable output.")
    show.set_defaults(handler=handle_show)
    set_ = actions.add_parser(
        "set",
        help=f"Switch the mode at run time ({', '.join(DEPLOYMENT_MODES)}; "
        "'settings' goes back to CONFIGSYNC_DEPLOYMENT_MODE).",
    )
    set_.add_argument("mode", metavar="MODE", help="One of the modes, or 'settings'.")
    set_.add_argument(
        "--json", action="store_true", help="Machine-readable output (as `mode show --json`)."
    )
    set_.set_defaults(handler=handle_set)


def handle_show(command: BaseCommand, options: dict[str, Any]) -> None:
    report = sync_strategies()
    if options["json"]:
        command.stdout.write(json.dumps(report, indent=2))
        return
    out = command.stdout
    for problem in report["problems"]:
        out.write(f"WARNING: {problem}")
    out.write(f"mode {report['mode']} (from {report['source']})")
    transports = ", ".join(report["transports"]) or "none (nothing syncs)"
    peers = ", ".join(f"{p['name']} ({p['transport']})" for p in report["peers"]) or "none"
    out.write(f"transports: {transports}; peers: {peers}")
    for name, row in report["strategies"].items():
        state = "on" if row["sync_enabled"] else "off"
        directions = ", ".join(row["directions"]) or "none"
        out.write(
            f"{name}{' (critical)' if row['critical'] else ''}: sync {state}, {row['strategy']}, "
            f"directions {directions}, every {row['interval_seconds']}s"
        )


def handle_set(command: BaseCommand, options: dict[str, Any]) -> None:
    wanted = options["mode"]
    try:
        mode = deployment_mode_set(mode="" if wanted == "settings" else wanted, actor=cli_actor())
    except ValidationError as exc:
        raise CommandError(
            "; ".join(exc.messages) + " (the current mode is kept)", returncode=1
        ) from None
    report = sync_strategies()
    if options["json"]:
        command.stdout.write(json.dumps(report, indent=2))
        return
    command.stdout.write(
        f"mode {report['mode']} (from {report['source']})"
        if mode
        else f"mode back to the settings: {report['mode']} (from {report['source']})"
    )
    for problem in report["problems"]:
        command.stdout.write(f"WARNING: {problem}")
