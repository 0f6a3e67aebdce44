"""``configsync history KEY [--model LABEL] [--json]`` and
``configsync rollback KEY VERSION [--model LABEL] [--json]``: the kept versions of a record and
rolling it back to one of them.

``KEY`` is a record's natural key; the record is a system setting unless ``--model`` names
another replicated model by its label (``providers.aiproviderconfig`` by name, ``auth.user`` by
username, ``auth.group`` by name; any case). ``history`` prints the versions newest first with
time, actor, entry point, origin node and the change against the previous version; a secret is
always ``********`` (and ``changed``/``same``), never its value, whatever reveal right the
caller holds. ``--json`` prints the API's document (``GET .../{key}/history/``).
``rollback`` writes the version as a new change that replicates and wins, and prints the new
version (one that would show a value kept secret now needs ``CONFIGSYNC_CLI_REVEAL``, the
command line's reveal right). An unknown model, a version that is not kept, a version that no
longer validates or whose secret this node cannot decrypt: one line on stderr, exit 1, nothing
written.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder

from configsync.cli import cli_may_reveal
from configsync.replication.selectors.history import (
    MASK,
    VersionView,
    history_model,
    record_history,
    record_versions,
)
from configsync.replication.services.rollback import record_rollback

DEFAULT_MODEL = "configsync.systemconfig"


def register(subparsers: argparse._SubParsersAction) -> None:
    model_help = (
        "The record's model label (default configsync.systemconfig; e.g. "
        "providers.aiproviderconfig, auth.user, auth.group)."
    )
    history = subparsers.add_parser(
        "history", help="The kept versions of a record, newest first (secrets masked)."
    )
    history.add_argument("key", help="The record's key (a setting's key, a provider's name...).")
    history.add_argument("--model", metavar="LABEL", default=DEFAULT_MODEL, help=model_help)
    history.add_argument("--json", action="store_true", help="Machine-readable output.")
    history.set_defaults(handler=handle_history)

    rollback = subparsers.add_parser(
        "rollback", help="Write a kept version again as a new change that replicates and wins."
    )
    rollback.add_argument("key", help="The record's key.")
    rollback.add_argument("version", type=int, help="The version number (see `history`).")
    rollback.add_argument("--model", metavar="LABEL", default=DEFAULT_MODEL, help=model_help)
    rollback.add_argument("--json", action="store_true", help="Machine-readable output.")
    rollback.set_defaults(handler=handle_rollback)


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if value == MASK:
        return MASK
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def _lines(view: VersionView) -> list[str]:
    head = (
        f"v{view.number}{' (current)' if view.current else ''}  {view.time}  {view.actor} via "
        f"{view.via}  from {view.origin_node}  {'DELETED  ' if view.deleted else ''}hlc {view.hlc}"
    )
    lines = [head]
    if view.changes is None:
        lines.append("    (the previous version is no longer kept)")
        return lines
    for change in view.changes:
        if change.sensitive:
            lines.append(f"    {change.name}: {change.status} (secret, masked)")
        else:
            lines.append(f"    {change.name}: {_shown(change.before)} -> {_shown(change.after)}")
    return lines


def handle_history(command: BaseCommand, options: dict[str, Any]) -> None:
    rm = history_model(options["model"])
    views = record_history(model_label=rm.label, natural_key=options["key"])
    if options["json"]:
        document = {
            "model": rm.label,
            "key": options["key"],
            "versions": [view.as_dict() for view in views],
        }
        command.stdout.write(json.dumps(document, cls=DjangoJSONEncoder, indent=2))
        return
    if not views:
        command.stdout.write(f"{rm.label} {options['key']!r}: no kept versions")
        return
    command.stdout.write(f"{rm.label} {options['key']!r}: {len(views)} kept version(s)")
    for view in views:
        for line in _lines(view):
            command.stdout.write(line)


def handle_rollback(command: BaseCommand, options: dict[str, Any]) -> None:
    rm = history_model(options["model"])
    record = record_rollback(
        model_label=rm.label,
        natural_key=options["key"],
        number=options["version"],
        allow_reveal=cli_may_reveal(),
    )
    newest = record_versions(model_label=rm.label, natural_key=options["key"])[0]
    if options["json"]:
        document = {
            "model": rm.label,
            "key": options["key"],
            "rolled_back_to": options["version"],
            "version": newest.number,
            "hlc": record.hlc,
            "deleted": record.deleted,
        }
        command.stdout.write(json.dumps(document, indent=2))
        return
    command.stdout.write(
        f"{rm.label} {options['key']!r} rolled back to version {options['version']}: "
        f"now version {newest.number}{' (deleted)' if record.deleted else ''}, hlc {record.hlc}"
    )
