"""``configsync external init``: create the database transport's tables in the external
database (``EXTERNAL_DATABASE_URL``), idempotently; ``configsync external status [--json]``: the
medium's writers, their heads and rows, and each node's replication-log entries there.

Neither prints the URL or a password: the database is named by engine, name and host.
``init --json``: ``database``, ``medium`` and ``group`` as ``status --json`` names them, and
``created`` (the tables this call created; ``[]`` when they were all there).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand

from configsync.replication.external.connection import database_describe, external_alias
from configsync.replication.services.peers import EXTERNAL_DATABASE_PEER
from configsync.replication.transports.database import DatabaseTransport
from configsync.services.node import node_id


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "external", help="The external database (EXTERNAL_DATABASE_URL): its tables and writers."
    )
    actions = parser.add_subparsers(dest="external_action", required=True)
    init = actions.add_parser(
        "init", help="Create the transport's tables there (idempotent; also done on first use)."
    )
    init.add_argument("--json", action="store_true", help="Machine-readable output.")
    init.set_defaults(handler=handle_init)
    status = actions.add_parser("status", help="Writers, their heads and rows; the nodes' logs.")
    status.add_argument("--json", action="store_true", help="Machine-readable output.")
    status.set_defaults(handler=handle_status)


def _transport() -> DatabaseTransport:
    return DatabaseTransport(name=EXTERNAL_DATABASE_PEER, node=node_id())


def handle_init(command: BaseCommand, options: dict[str, Any]) -> None:
    link = _transport()
    try:
        created = link.tables_init()
        where = link.describe()
        database = database_describe(external_alias(link.alias))
    finally:
        link.close()
    if options["json"]:
        report = {
            "database": database,
            "medium": link.medium,
            "group": link.group,
            "created": created,
        }
        command.stdout.write(json.dumps(report, indent=2))
        return
    if created:
        command.stdout.write(f"{where}: created {', '.join(created)}")
    else:
        command.stdout.write(f"{where}: the tables were already there, nothing to do")


def handle_status(command: BaseCommand, options: dict[str, Any]) -> None:
    link = _transport()
    try:
        report = link.status()
    finally:
        link.close()
    if options["json"]:
        command.stdout.write(json.dumps(report, indent=2))
        return
    out = command.stdout
    out.write(f"{report['database']}: medium {report['medium']} (group {report['group']})")
    if report["tables_missing"]:
        out.write(
            f"tables missing: {', '.join(report['tables_missing'])} "
            "(run `configsync external init`, or let the first sync create them)"
        )
        return
    out.write(f"tables present (schema {report['schema_version']})")
    if not report["writers"]:
        out.write("no writer yet")
    for writer in report["writers"]:
        out.write(
            f"writer {writer['writer']}: head {writer['head']}, {writer['rows']} rows, "
            f"last write {writer['updated']}"
        )
    for entry in report["log"]:
        out.write(
            f"log {entry['node']} {entry['direction']}: cursor {entry['cursor'] or '(start)'}, "
            f"recorded {entry['updated']}"
        )
