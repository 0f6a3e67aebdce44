"""``configsync keys generate|rotate|status``: the encryption keys.

Rotating to a new key::

    python manage.py configsync keys generate          # prints NEW
    CONFIGSYNC_ENCRYPTION_KEYS=NEW,OLD  (restart)      # NEW encrypts, both decrypt
    python manage.py configsync keys rotate            # re-encrypts everything with NEW
    CONFIGSYNC_ENCRYPTION_KEYS=NEW      (restart)      # OLD is no longer needed

``--json`` on each: ``generate`` prints ``{"key", "key_id"}`` (the key is what it exists to print;
its id is the one ``status`` and the tokens show), ``rotate`` the ``RotationReport``'s fields
(``unreadable``: model, field, record and reason of each value left as it was, never a value),
``status`` the counts per key id.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from configsync.crypto.keyring import parse_key
from configsync.crypto.rotation import keys_generate, keys_rotate, keys_status
from configsync.locks import named_lock


def _generate(command: BaseCommand, options: dict[str, Any]) -> None:
    key = keys_generate()
    if options["json"]:
        command.stdout.write(json.dumps({"key": key, "key_id": parse_key(key).kid}, indent=2))
        return
    command.stdout.write(key)


def _rotate(command: BaseCommand, options: dict[str, Any]) -> None:
    with named_lock("keys-rotate", blocking=False) as acquired:
        if not acquired:
            raise CommandError("another key rotation is running", returncode=1)
        report = keys_rotate(batch_size=options["batch_size"], max_batches=options["max_batches"])
    if options["json"]:
        # The unreadable values are in the document; stderr keeps only the one-line failure.
        command.stdout.write(json.dumps(asdict(report), indent=2))
    else:
        for item in report.unreadable:
            command.stderr.write(f"cannot rotate {item}")
        command.stdout.write(
            f"rotated {report.rotated} value(s) to key {report.primary_key_id}; "
            f"{report.already_current} already on it; {report.scanned} record(s) in "
            f"{report.batches} batch(es)"
            + ("" if report.complete else "; stopped early, run again")
        )
    if report.unreadable:
        where = "in the JSON document" if options["json"] else "listed above"
        raise CommandError(
            f"{len(report.unreadable)} value(s) could not be decrypted with any configured key "
            f"({where}); they were left as they are",
            returncode=1,
        )


def _status(command: BaseCommand, options: dict[str, Any]) -> None:
    report = keys_status()
    if options["json"]:
        data = {
            "primary_key_id": report.primary_key_id,
            "configured_key_ids": report.configured_key_ids,
            "tokens_by_key_id": report.tokens_by_key_id,
            "unknown_key_ids": report.unknown_key_ids,
            "not_on_primary": report.not_on_primary,
        }
        command.stdout.write(json.dumps(data, indent=2))
        return
    for position, kid in enumerate(report.configured_key_ids):
        role = "primary" if position == 0 else "decrypt only"
        count = report.tokens_by_key_id.get(kid, 0)
        command.stdout.write(f"{kid}  {role:<12}  {count} value(s)")
    for kid in report.unknown_key_ids:
        count = report.tokens_by_key_id[kid]
        command.stdout.write(f"{kid}  {'NOT CONFIGURED':<12}  {count} value(s) unreadable")
    command.stdout.write(f"{report.not_on_primary} value(s) not on the primary key")


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``keys generate``, ``keys rotate`` and ``keys status``."""
    keys_parser = subparsers.add_parser("keys", help="generate and rotate encryption keys")
    actions = keys_parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)

    generate = actions.add_parser("generate", help="print one new key")
    generate.add_argument(
        "--json", action="store_true", help="machine-readable output: the key and its id"
    )
    generate.set_defaults(handler=_generate)

    rotate = actions.add_parser(
        "rotate",
        help="re-encrypt every encrypted value with the first key",
        description="Re-encrypt every encrypted value with the first key of "
        "CONFIGSYNC_ENCRYPTION_KEYS. Safe to interrupt and re-run; not a change of any value.",
    )
    rotate.add_argument("--batch-size", type=_positive, default=None, metavar="N")
    rotate.add_argument(
        "--max-batches", type=_positive, default=None, metavar="N", help="stop after N batches"
    )
    rotate.add_argument("--json", action="store_true", help="machine-readable output")
    rotate.set_defaults(handler=_rotate)

    status = actions.add_parser("status", help="count stored values per key id")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)
