"""``configsync set|get|list|delete``: system settings from the command line.

A secret given as ``VALUE`` lands in the shell history and in ``ps``; pass ``-`` instead to read
the value from standard input (one trailing newline is dropped)::

    printf '%s' "$DATABASE_PASSWORD" | python manage.py configsync set DB_PASSWORD - --sensitive

Without ``--sensitive`` or ``--plain``, ``set`` applies the one secret rule
(``configsync.sensitivity``: a secret-looking name such as ``*_KEY``, or a URL carrying
credentials, is stored sensitive) and says which rule applied.
``set`` never lowers sensitivity by itself: an existing sensitive setting stays sensitive unless
``--plain`` is given, and turning a sensitive setting plain also needs ``--yes`` (it then stores
and replicates VALUE in plain text). The local operator holds the reveal right (``get --reveal``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from configsync.cli import REVEAL_REFUSED, cli_may_reveal, validation_sentences
from configsync.logging import MASK
from configsync.models import SystemConfig
from configsync.selectors.system_config import system_config_get, system_config_list
from configsync.sensitivity import EXPLICIT, NAME_PATTERN, URL_CREDENTIALS, SensitivityDecision
from configsync.services.audit import audit_reveal
from configsync.services.system_config import (
    EXISTING,
    system_config_delete,
    system_config_sensitivity,
    system_config_set,
)
from configsync.value_types import ValueType


def read_value_argument(value: str, *, what: str = "VALUE") -> str:
    """``value`` itself, or standard input when it is ``-`` (without its final newline)."""
    if value != "-":
        return value
    if sys.stdin is None or sys.stdin.closed:
        raise CommandError(f"{what} is '-' but standard input is closed", returncode=1)
    text = sys.stdin.read()
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def write_table(command: BaseCommand, rows: Sequence[Sequence[str]]) -> None:
    """``rows`` (the first is the header) in aligned columns; the last column is left ragged."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        command.stdout.write("  ".join([*cells, row[-1]]).rstrip())


def masked_value(record: SystemConfig) -> tuple[Any, str | None]:
    """What listings show: the typed value (or why it cannot be read), or a mask for a
    sensitive one (never decrypted)."""
    if record.is_sensitive:
        return (MASK if record.has_value else None), None
    return record.typed_value_or_problem()


def _revealed_value(record: SystemConfig) -> tuple[Any, str | None]:
    return record.typed_value_or_problem() if record.has_value else (None, None)


def record_as_dict(record: SystemConfig, *, reveal: bool = False) -> dict[str, Any]:
    """The JSON form of a setting; a sensitive value is masked unless ``reveal``."""
    value, problem = _revealed_value(record) if reveal else masked_value(record)
    return {
        "key": record.key,
        "value": value,
        "value_error": problem,
        "value_type": record.value_type,
        "is_sensitive": record.is_sensitive,
        "has_value": record.has_value,
        "category": record.category,
        "description": record.description,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def sensitivity_phrase(decision: SensitivityDecision) -> str:
    """What ``set`` says about sensitivity: ``stored as sensitive (the name matches *_KEY)``."""
    if decision.rule == NAME_PATTERN:
        return f"stored as sensitive (the name matches {decision.pattern})"
    if decision.rule == URL_CREDENTIALS:
        return "stored as sensitive (the value is a URL carrying credentials)"
    if decision.rule == EXISTING:
        return "stored as sensitive (it already was)"
    if decision.rule == EXPLICIT:
        return "stored as sensitive (as asked)" if decision.sensitive else "stored plain (as asked)"
    return "stored plain (no secret rule applies)"


def _set(command: BaseCommand, options: dict[str, Any]) -> None:
    explicit = True if options["sensitive"] else (False if options["plain"] else None)
    if explicit is False and not options["yes"]:
        current = SystemConfig.objects.filter(key=options["key"]).first()
        if current is not None and current.is_sensitive:
            raise CommandError(
                f"{options['key']} is sensitive: --plain stores the new value in plain text, "
                "shows it to every reader and replicates it so; add --yes to confirm",
                returncode=1,
            )
    value = read_value_argument(options["value"])
    decision = system_config_sensitivity(key=options["key"], value=value, explicit=explicit)
    try:
        record = system_config_set(
            key=options["key"],
            value=value,
            value_type=options["type"],
            is_sensitive=decision.sensitive,
            category=options["category"],
            description=options["description"],
            allow_reveal=options["yes"],
            actor=cli_actor(),
        )
    except ValidationError as exc:
        raise CommandError(validation_sentences(exc), returncode=1) from None
    if options["json"]:
        body = {**record_as_dict(record), "sensitivity_rule": decision.rule}
        command.stdout.write(json.dumps(body, indent=2))
        return
    command.stdout.write(
        f"saved {record.key} ({record.value_type}): {sensitivity_phrase(decision)}"
    )


def cli_actor() -> str:
    """Who runs the command, for the audit trail (``cli:<login>``)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _get(command: BaseCommand, options: dict[str, Any]) -> None:
    record = system_config_get(key=options["key"])
    reveal = options["reveal"]
    if reveal and record.is_sensitive and record.has_value:
        if not cli_may_reveal():
            raise CommandError(f"get --reveal refused: {REVEAL_REFUSED}", returncode=1)
        record.raw_value()  # decrypt first: a value that cannot be read is not a reveal
        audit_reveal(actor=cli_actor(), instance=record)
    if options["json"]:
        command.stdout.write(json.dumps(record_as_dict(record, reveal=reveal), indent=2))
        return
    if record.is_sensitive and not reveal:
        command.stdout.write(MASK if record.has_value else "")
        return
    command.stdout.write(record.raw_value())


def _list(command: BaseCommand, options: dict[str, Any]) -> None:
    records = list(system_config_list(category=options["category"]))
    if options["json"]:
        command.stdout.write(json.dumps([record_as_dict(r) for r in records], indent=2))
        return
    if not records:
        command.stdout.write("no settings")
        return
    rows = [("KEY", "TYPE", "CATEGORY", "SENSITIVE", "VALUE")]
    for record in records:
        if record.is_sensitive:
            shown = MASK if record.has_value else "(not set)"
        else:
            shown = record.value if len(record.value) <= 60 else record.value[:57] + "..."
        sensitive = "yes" if record.is_sensitive else "no"
        rows.append((record.key, record.value_type, record.category, sensitive, shown))
    write_table(command, rows)


def _delete(command: BaseCommand, options: dict[str, Any]) -> None:
    system_config_delete(key=options["key"])
    if options["json"]:
        command.stdout.write(json.dumps({"key": options["key"], "deleted": True}))
        return
    command.stdout.write(f"deleted {options['key']}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``set``, ``get``, ``list`` and ``delete``."""
    set_parser = subparsers.add_parser(
        "set",
        help="create or update a system setting",
        description="Create or update a setting. VALUE '-' reads it from standard input "
        "(keeps secrets out of shell history and ps).",
    )
    set_parser.add_argument("key", metavar="KEY")
    set_parser.add_argument("value", metavar="VALUE", help="the value, or '-' to read stdin")
    sensitivity = set_parser.add_mutually_exclusive_group()
    sensitivity.add_argument(
        "--sensitive",
        action="store_true",
        help="encrypt at rest and mask everywhere (an existing sensitive setting stays so)",
    )
    sensitivity.add_argument(
        "--plain",
        action="store_true",
        help="store in plain text; turning a sensitive setting plain also needs --yes",
    )
    set_parser.add_argument(
        "--yes", action="store_true", help="confirm turning a sensitive setting plain"
    )
    # No argparse ``choices``: an unknown type is a validation error (exit 1, one line).
    set_parser.add_argument(
        "--type",
        default=None,
        metavar="|".join(ValueType.values),
        help="value type (default: str, or the setting's current type)",
    )
    set_parser.add_argument("--category", default=None, metavar="NAME")
    set_parser.add_argument("--description", default=None, metavar="TEXT")
    set_parser.add_argument("--json", action="store_true", help="machine-readable output")
    set_parser.set_defaults(handler=_set)

    get_parser = subparsers.add_parser("get", help="print one setting's value (masked)")
    get_parser.add_argument("key", metavar="KEY")
    get_parser.add_argument(
        "--reveal", action="store_true", help="print a sensitive value in clear"
    )
    get_parser.add_argument("--json", action="store_true", help="machine-readable output")
    get_parser.set_defaults(handler=_get)

    list_parser = subparsers.add_parser("list", help="list settings (sensitive values masked)")
    list_parser.add_argument("--json", action="store_true", help="machine-readable output")
    list_parser.add_argument("--category", default=None, metavar="NAME")
    list_parser.set_defaults(handler=_list)

    delete_parser = subparsers.add_parser("delete", help="delete a setting")
    delete_parser.add_argument("key", metavar="KEY")
    delete_parser.add_argument("--json", action="store_true", help="machine-readable output")
    delete_parser.set_defaults(handler=_delete)
