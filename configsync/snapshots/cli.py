"""``configsync snapshot``, ``restore`` and ``promote`` (names fixed by the contract).

* ``snapshot [--output PATH] [--json]`` — this node's snapshot: to stdout, or to ``PATH``
  (atomically, mode 0600; ``--json`` then prints a summary). ``--to-bucket`` writes one to the
  bucket now; ``--list-bucket [--node NODE]`` lists the bucket's snapshots of this node.
* ``restore PATH|bucket:NAME [--dry-run] [--json]`` — with ``--dry-run`` prints what would be
  added, changed and removed (secrets only named); without, applies it in one transaction. A
  record it would make show a value its history masks needs ``CONFIGSYNC_CLI_REVEAL``.
* ``promote --from SNAPSHOT --mode full|content-only --output PATH [--json]`` — a promoted
  snapshot for staging or a developer's machine; ``promote --explain`` prints the rules table.

Refusals (checksum, format, group, keys, mode) are one line on stderr and exit 1, nothing written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from configsync.cli import cli_may_reveal
from configsync.logging import MASK
from configsync.snapshots.document import document_dumps, file_write_private
from configsync.snapshots.promotion import explain_lines, promote_document, promotion_rules
from configsync.snapshots.selectors import snapshot_document
from configsync.snapshots.services import (
    RestoreItem,
    snapshot_load,
    snapshot_restore,
    snapshot_save,
)


def _summary(document: dict[str, Any], output: str | None) -> dict[str, Any]:
    return {
        "output": output,
        "node_id": document["node_id"],
        "group_id": document["group_id"],
        "created_at": document["created_at"],
        "promoted": document["promoted"],
        "data_types": document["data_types"],
        "records": len(document["records"]),
        "checksum": document["checksum"],
    }


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(item: RestoreItem) -> list[str]:
    lines = [f"  {item.action:<8} {item.model} {item.key}"]
    for name in item.fields:
        if name in item.secret_fields:
            lines.append(f"      {name}: {MASK} (secret changed)")
        elif name in item.values:
            before, after = item.values[name]
            lines.append(f"      {name}: {_shown(before)} -> {_shown(after)}")
    return lines


def _snapshot(command: BaseCommand, options: dict[str, Any]) -> None:
    if options["list_bucket"]:
        from configsync.snapshots.bucket import bucket_snapshots_list

        backups = bucket_snapshots_list(node=options["node"])
        if options["json"]:
            command.stdout.write(json.dumps([b.as_dict() for b in backups], indent=2))
            return
        for backup in backups:
            command.stdout.write(f"bucket:{backup.node}/{backup.name}  {backup.size} bytes")
        command.stdout.write(f"{len(backups)} snapshot(s) in the bucket")
        return
    if options["to_bucket"]:
        from configsync.snapshots.bucket import bucket_snapshot_write

        backup = bucket_snapshot_write()
        if options["json"]:
            command.stdout.write(json.dumps(backup.as_dict(), indent=2))
        else:
            command.stdout.write(f"snapshot written to bucket:{backup.node}/{backup.name}")
        return
    output = options["output"]
    if output:
        document = snapshot_save(path=Path(output))
        if options["json"]:
            command.stdout.write(json.dumps(_summary(document, output), indent=2))
        else:
            command.stdout.write(
                f"snapshot of {len(document['records'])} records written to {output} "
                f"({document['checksum']})"
            )
        return
    command.stdout.write(document_dumps(snapshot_document()).decode(), ending="")


def _restore(command: BaseCommand, options: dict[str, Any]) -> None:
    document = snapshot_load(source=options["source"])
    report = snapshot_restore(
        document=document, dry_run=options["dry_run"], allow_reveal=cli_may_reveal()
    )
    if options["json"]:
        command.stdout.write(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return
    if report.dry_run or options.get("verbosity", 1) > 1:
        for item in report.items:
            for line in _describe(item):
                command.stdout.write(line)
    command.stdout.write(report.summary())


def _promote(command: BaseCommand, options: dict[str, Any]) -> None:
    if options["explain"]:
        table = promotion_rules()
        if options["json"]:
            command.stdout.write(json.dumps([r.as_dict() for r in table.values()], indent=2))
        else:
            for line in explain_lines(table):
                command.stdout.write(line)
        return
    missing = [f"--{name}" for name in ("from", "mode", "output") if not options[name]]
    if missing:
        raise CommandError(
            f"promote needs {', '.join(missing)} (or --explain to print the rules)", returncode=1
        )
    document = snapshot_load(source=options["from"])
    promoted = promote_document(document=document, mode=options["mode"])
    file_write_private(Path(options["output"]), document_dumps(promoted))
    if options["json"]:
        command.stdout.write(json.dumps(_summary(promoted, options["output"]), indent=2))
    else:
        command.stdout.write(
            f"promoted snapshot ({options['mode']}) of {len(promoted['records'])} records "
            f"written to {options['output']}"
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``snapshot``, ``restore`` and ``promote``."""
    parser = subparsers.add_parser(
        "snapshot",
        help="write a snapshot of every replicated record (secrets stay ciphertext)",
        description="A snapshot of every replicated record, to stdout or --output PATH (0600).",
    )
    parser.add_argument("--output", metavar="PATH", default=None, help="write to this file")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--to-bucket", action="store_true", help="write one to the bucket now (R2 settings)"
    )
    where.add_argument(
        "--list-bucket", action="store_true", help="list this node's snapshots in the bucket"
    )
    parser.add_argument("--node", default=None, help="with --list-bucket: another node's snapshots")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_snapshot)

    parser = subparsers.add_parser(
        "restore",
        help="restore a snapshot as new writes that replicate (--dry-run: show the difference)",
        description="Restore a snapshot file, or bucket:NAME from the bucket.",
    )
    parser.add_argument("source", metavar="PATH", help="a snapshot file or bucket:NAME")
    parser.add_argument(
        "--dry-run", action="store_true", help="print added/changed/removed, change nothing"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_restore)

    parser = subparsers.add_parser(
        "promote",
        help="write a snapshot for a lower environment: secrets and users made safe",
        description="Promote a snapshot (--from) to staging or a developer's machine.",
    )
    parser.add_argument(
        "--from", dest="from", metavar="SNAPSHOT", default=None, help="file or bucket:NAME"
    )
    parser.add_argument("--mode", default=None, help="full or content-only")
    parser.add_argument("--output", metavar="PATH", default=None, help="the promoted snapshot")
    parser.add_argument("--explain", action="store_true", help="print the rules table")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_promote)
