"""``configsync quarantine [--json] [--all]``, ``quarantine retry ID [--json]``,
``quarantine drop ID [--json]``: replicated changes this node could not store (never values: the
payload is not shown). ``--json`` prints what ``/api/v1/sync/quarantine/`` answers: the listing and
``drop`` the quarantined changes' fields, ``retry`` the outcome (``id``, ``status``, ``reason``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from configsync.models import QuarantinedChange
from configsync.replication.selectors.quarantine import quarantine_list
from configsync.replication.services.quarantine import quarantine_drop, quarantine_retry
from configsync.replication.services.wire import QUARANTINED


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quarantine",
        help="Replicated changes this node could not store; retry or drop them.",
    )
    parser.add_argument("--json", action="store_true", help="Machine-readable output.")
    parser.add_argument("--all", action="store_true", help="Applied and dropped ones too.")
    actions = parser.add_subparsers(dest="quarantine_action", metavar="{retry,drop}")
    retry = actions.add_parser("retry", help="Apply a quarantined change again now.")
    retry.add_argument("id", type=int, help="Quarantined change id (see `configsync quarantine`).")
    drop = actions.add_parser("drop", help="Stop retrying a quarantined change.")
    drop.add_argument("id", type=int, help="Quarantined change id (see `configsync quarantine`).")
    for action in (retry, drop):
        # After the action as well as before it (`quarantine --json drop 3`): SUPPRESS keeps the
        # parent's value when the option is not given here.
        action.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="Machine-readable output.",
        )
    parser.set_defaults(handler=handle)


def _row(item: QuarantinedChange) -> dict[str, Any]:
    return {
        "id": item.pk,
        "model": item.model_label,
        "key": item.natural_key,
        "hlc": item.hlc,
        "source": item.source,
        "source_node": item.source_node,
        "reason": item.reason,
        "status": item.status,
        "attempts": item.attempts,
        "received_at": item.received_at,
        "updated_at": item.updated_at,
    }


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    action = options.get("quarantine_action")
    if action in ("retry", "drop"):
        try:
            if action == "drop":
                dropped = quarantine_drop(quarantine_id=options["id"])
                if options["json"]:
                    command.stdout.write(json.dumps(_row(dropped), cls=DjangoJSONEncoder, indent=2))
                    return
                command.stdout.write(f"quarantined change {options['id']} dropped")
                return
            (outcome,) = quarantine_retry(quarantine_id=options["id"])
        except QuarantinedChange.DoesNotExist:
            raise CommandError(f"no quarantined change {options['id']}", returncode=1) from None
        if outcome.status == QUARANTINED:
            raise CommandError(
                f"quarantined change {outcome.id} still cannot be stored: {outcome.reason}",
                returncode=1,
            )
        if options["json"]:
            command.stdout.write(json.dumps(outcome.as_dict(), indent=2))
            return
        command.stdout.write(f"quarantined change {outcome.id}: {outcome.status}")
        return
    rows = [_row(item) for item in quarantine_list(status=None if options["all"] else "open")]
    if options["json"]:
        command.stdout.write(json.dumps(rows, cls=DjangoJSONEncoder, indent=2))
        return
    if not rows:
        command.stdout.write("no quarantined changes")
        return
    for row in rows:
        command.stdout.write(
            f"{row['id']}  {row['status']}  {row['model']}:{row['key']} from {row['source']} "
            f"({row['attempts']} attempts): {row['reason']}"
        )
