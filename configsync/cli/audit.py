"""``configsync audit``: read and export the audit trail, and ask "was it this value?".

* ``audit [--since WHEN] [--action A] [--via V] [--actor X] [--model M] [--key K] [--limit N]``
  prints a table for people, newest first (time to the second, UTC).
* ``--json`` prints one JSON list (newest first), ``--jsonl`` JSON lines, one event per line in
  the order they happened: the export format (``configsync.selectors.audit.AUDIT_EXPORT_FIELDS``,
  stable names). ``--limit N`` keeps the newest N in every form.
* ``audit --value-of EVENT_ID [--field FIELD]`` asks whether a sensitive field was set to a
  candidate value by that event: it reads the candidate from standard input when that is not a
  terminal (one line; a trailing newline is dropped), else from a prompt that does not echo —
  never from the command line, which other users of the machine can read in ``ps``. It prints
  ``yes``, ``no`` or ``unknown`` (this node lacks the key the hash was made under, or the value
  was unreadable when recorded) as the last line; ``--json`` prints ``{"event", "field",
  "answer", "match"}``. The candidate is compared with the event's keyed hash in memory
  (``configsync.services.audit.audit_value_check``) and is never printed, logged or stored; the
  question is itself audited (``check_value``) and needs the command line's reveal right
  (``CONFIGSYNC_CLI_REVEAL``), as it can confirm a guessed secret.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from configsync import actor as acting
from configsync.cli import REVEAL_REFUSED, cli_may_reveal
from configsync.logging import register_secret
from configsync.models import AuditEvent
from configsync.selectors.audit import (
    SINCE_HELP,
    audit_event_export,
    audit_event_get,
    audit_events,
    audit_events_export,
    audit_hashed_field,
)
from configsync.services.audit import audit_value_check

ANSWERS = {True: "yes", False: "no", None: "unknown"}
LISTING_OPTIONS = ("since", "action", "via", "actor", "model", "key", "limit", "jsonl")
TABLE_COLUMNS = ("when (UTC)", "id", "actor", "via", "action", "record", "node", "changed")


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError("use a whole number of events, 1 or more")
    return number


def _record(row: dict[str, Any]) -> str:
    return f"{row['model']}:{row['key']}" if row["model"] else "-"


def _changed(row: dict[str, Any]) -> str:
    if row["changed_fields"]:
        return ",".join(row["changed_fields"])
    details = row["details"]
    if details and not row["model"]:
        # A node-wide action: its details are names and counts (never a value).
        return " ".join(f"{name}={details[name]}" for name in sorted(details))[:80]
    return "-"


def _table(command: BaseCommand, rows: list[dict[str, Any]]) -> None:
    lines = [
        (
            row["at"][:19].replace("T", " "),
            str(row["id"]),
            row["actor"],
            row["via"],
            row["action"],
            _record(row),
            row["node"],
            _changed(row),
        )
        for row in rows
    ]
    if not lines:
        command.stderr.write("no audit events match")
        return
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(TABLE_COLUMNS)]
    for line in (TABLE_COLUMNS, *lines):
        command.stdout.write(
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        )


def _candidate() -> str:
    """The value to compare: standard input when piped, else a prompt without echo."""
    if sys.stdin is not None and not sys.stdin.isatty():
        value = sys.stdin.readline()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    else:
        value = getpass.getpass("value to compare (not shown): ")
    if not value:
        raise CommandError("no value given: pipe it on standard input or type it at the prompt")
    register_secret(value)  # masked should any log line ever carry it
    return value


def _value_of(command: BaseCommand, options: dict[str, Any]) -> None:
    if not cli_may_reveal():
        raise CommandError(f"audit --value-of refused: {REVEAL_REFUSED}")
    event = audit_event_get(event_id=options["value_of"])
    if event is None:
        raise CommandError(f"no audit event with id {options['value_of']}")
    field = audit_hashed_field(event=event, field=options["field"])  # before asking the value
    match = audit_value_check(event_id=event.pk, field=field, value=_candidate())
    answer = ANSWERS[match]
    if options["json"]:
        body = {"event": event.pk, "field": field, "answer": answer, "match": match}
        command.stdout.write(json.dumps(body, indent=2))
        return
    command.stderr.write(
        f"audit event {event.pk} ({event.model_label}:{event.natural_key}, {field}):"
        + (" this node lacks the key the hash was made under" if match is None else "")
    )
    command.stdout.write(answer)


def _audit(command: BaseCommand, options: dict[str, Any]) -> None:
    if options["value_of"] is not None:
        listing = [f"--{name}" for name in LISTING_OPTIONS if options[name] not in (None, False)]
        if listing:
            raise CommandError(f"--value-of takes no listing options ({', '.join(listing)})")
        _value_of(command, options)
        return
    if options["field"] is not None:
        raise CommandError("--field goes with --value-of")
    events = audit_events(  # a ValidationError becomes the command's one line on stderr
        since=options["since"],
        action=options["action"],
        actor=options["actor"],
        via=options["via"],
        model=options["model"],
        key=options["key"],
    )
    limit = options["limit"]
    if options["jsonl"]:
        for row in audit_events_export(events, limit=limit):
            command.stdout.write(json.dumps(row, separators=(",", ":")))
        return
    shown = events[:limit] if limit is not None else events
    rows = [audit_event_export(event) for event in shown.iterator(chunk_size=500)]
    if options["json"]:
        command.stdout.write(json.dumps(rows, indent=2))
        return
    _table(command, rows)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``audit``."""
    parser = subparsers.add_parser(
        "audit",
        help="the audit trail: who changed or revealed what, when, where; export as JSON lines",
        description="List audit events (newest first), export them, or check a value against "
        "an event's keyed hash (--value-of).",
    )
    parser.add_argument("--since", metavar="WHEN", help=f"events from then on: {SINCE_HELP}")
    parser.add_argument(
        "--action", choices=list(AuditEvent.Action.values), help="only this kind of event"
    )
    parser.add_argument("--via", choices=list(acting.VIAS), help="only this entry point")
    parser.add_argument(
        "--actor", metavar="X", help="actors containing X (user:alice, api-key:, cli:, peer:b)"
    )
    parser.add_argument(
        "--model", metavar="LABEL", help="only this model (configsync.systemconfig, auth.user…)"
    )
    parser.add_argument("--key", metavar="K", help="only the record with this key or name")
    parser.add_argument("--limit", type=_positive, metavar="N", help="only the newest N events")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON list, newest first")
    output.add_argument(
        "--jsonl",
        action="store_true",
        help="export: JSON lines, one event per line, oldest first (stable field names)",
    )
    parser.add_argument(
        "--value-of",
        type=int,
        metavar="EVENT_ID",
        help="was this value set by event EVENT_ID? reads the value from standard input or a "
        "prompt (never an argument); prints yes, no or unknown",
    )
    parser.add_argument(
        "--field", metavar="FIELD", help="with --value-of: the sensitive field to compare"
    )
    parser.set_defaults(handler=_audit)
