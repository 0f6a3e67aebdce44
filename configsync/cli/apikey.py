"""``configsync apikey create|list|revoke``: API keys of services calling the REST API.

``create`` prints the new key once, as the last line on its own; only its hash is stored.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand

from configsync.models import ServiceAPIKey
from configsync.services.api_keys import api_key_create, api_key_revoke


def _scopes(record: ServiceAPIKey) -> list[str]:
    return (
        ["read"]
        + (["write"] if record.can_write else [])
        + (["reveal"] if record.can_reveal else [])
    )


def _create(command: BaseCommand, options: dict[str, Any]) -> None:
    record, key = api_key_create(
        name=options["name"], can_write=options["write"], can_reveal=options["reveal_secrets"]
    )
    command.stderr.write(
        f"created API key {record.name!r} (prefix {record.prefix}; scopes "
        f"{', '.join(_scopes(record))}); it is shown once, below. "
        "Send it as 'Authorization: Api-Key <key>'."
    )
    command.stdout.write(key)


def _list(command: BaseCommand, options: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = [
        {
            "name": record.name,
            "prefix": record.prefix,
            "scopes": _scopes(record),
            "revoked": record.revoked,
            "created": record.created.isoformat(),
        }
        for record in ServiceAPIKey.objects.order_by("created")
    ]
    if options["json"]:
        command.stdout.write(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = " revoked" if row["revoked"] else ""
        command.stdout.write(f"{row['prefix']}  {row['name']}  {','.join(row['scopes'])}{state}")


def _revoke(command: BaseCommand, options: dict[str, Any]) -> None:
    record = api_key_revoke(prefix=options["prefix"])
    command.stdout.write(f"revoked API key {record.name!r} ({record.prefix})")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``apikey create``, ``apikey list`` and ``apikey revoke``."""
    parser = subparsers.add_parser("apikey", help="create, list and revoke REST API keys")
    actions = parser.add_subparsers(dest="apikey_action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="create a key (read scope; --write, --reveal-secrets add scopes); prints it once",
    )
    create.add_argument("name", help="what the key is for, e.g. billing-worker")
    create.add_argument("--write", action="store_true", help="may create, change and delete")
    create.add_argument(
        "--reveal-secrets", action="store_true", help="may read sensitive values (?reveal=true)"
    )
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="list keys (prefix, name, scopes; never the key)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    revoke = actions.add_parser("revoke", help="revoke the key with this prefix")
    revoke.add_argument("prefix")
    revoke.set_defaults(handler=_revoke)
