"""``configsync apikey create|list|revoke``: API keys of services calling the REST API.

``create`` prints the new key once, as the last line on its own; only its hash is stored. Keys
made here and in the admin are the same records (``ServiceAPIKey``): each lists the other's.

``--json`` on each action prints one document with the fields of ``apikey list --json``:
``create`` adds ``key`` (the key itself, shown this once), ``revoke`` adds ``already_revoked``.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from configsync.models import ServiceAPIKey
from configsync.services.api_keys import api_key_create, api_key_revoke

_DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhdw])\Z")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str, *, now: datetime | None = None) -> datetime:
    """``--expires``: a duration from now (``90m``, ``12h``, ``30d``, ``2w``), an ISO date (the key
    expires at 00:00 of that day) or an ISO date and time; without an offset, in ``TIME_ZONE``
    (UTC). ``ValidationError`` naming ``expires`` otherwise."""
    text = text.strip()
    duration = _DURATION.match(text)
    if duration:
        amount, unit = duration.groups()
        return (now or timezone.now()) + timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            moment = datetime.combine(day, time.min) if day is not None else None
    except ValueError:
        moment = None
    if moment is None:
        raise ValidationError(
            {
                "expires": "Use a duration (90m, 12h, 30d, 2w), a date (2026-12-31) or an ISO "
                "date and time (2026-12-31T18:00:00+02:00)."
            }
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _state(record: ServiceAPIKey) -> str:
    return record.state.value


def _row(record: ServiceAPIKey) -> dict[str, Any]:
    """A key as ``apikey list --json`` shows it (never the key: only its prefix)."""
    return {
        "name": record.name,
        "prefix": record.prefix,
        "scopes": record.scopes,
        "state": _state(record),
        "revoked": record.revoked,
        "expires": record.expiry_date.isoformat() if record.expiry_date else None,
        "created": record.created.isoformat(),
    }


def _create(command: BaseCommand, options: dict[str, Any]) -> None:
    expires = options["expires"]
    record, key = api_key_create(
        name=options["name"],
        can_write=options["write"],
        can_reveal=options["reveal_secrets"],
        expiry_date=parse_expiry(expires) if expires is not None else None,
    )
    if options["json"]:
        command.stdout.write(json.dumps({**_row(record), "key": key}, indent=2))
        return
    until = (
        f"expires {record.expiry_date.isoformat(timespec='seconds')}"
        if record.expiry_date
        else "no expiry"
    )
    command.stderr.write(
        f"created API key {record.name!r} (prefix {record.prefix}; scopes "
        f"{', '.join(record.scopes)}; {until}); it is shown once, below. "
        "Send it as 'Authorization: Api-Key <key>'."
    )
    command.stdout.write(key)


def _list(command: BaseCommand, options: dict[str, Any]) -> None:
    records = list(ServiceAPIKey.objects.order_by("created"))
    rows = [_row(record) for record in records]
    if options["json"]:
        command.stdout.write(json.dumps(rows, indent=2))
        return
    for record, row in zip(records, rows, strict=True):
        expiry = record.expiry_date
        expires = f"  expires {expiry.isoformat(timespec='seconds')}" if expiry else ""
        state = "" if row["state"] == "usable" else f"  {row['state']}"
        command.stdout.write(
            f"{row['prefix']}  {row['name']}  {','.join(row['scopes'])}{expires}{state}"
        )


def _revoke(command: BaseCommand, options: dict[str, Any]) -> None:
    target = options["key"]
    if ServiceAPIKey.objects.filter(prefix=target).exists():
        was_revoked = ServiceAPIKey.objects.filter(prefix=target, revoked=True).exists()
        record = api_key_revoke(prefix=target)
    else:
        was_revoked = not ServiceAPIKey.objects.filter(name=target, revoked=False).exists()
        record = api_key_revoke(name=target)
    if options["json"]:
        command.stdout.write(json.dumps({**_row(record), "already_revoked": was_revoked}, indent=2))
        return
    already = " (it already was)" if was_revoked else ""
    command.stdout.write(f"revoked API key {record.name!r} ({record.prefix}){already}")


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
    create.add_argument(
        "--expires",
        metavar="WHEN",
        help="when the key stops working: 30d, 12h, 2w, 90m from now, or an ISO date "
        "(2026-12-31: at 00:00 UTC) or date and time; default: never",
    )
    create.add_argument(
        "--json", action="store_true", help="one JSON document: the key's fields and the key"
    )
    create.set_defaults(handler=_create)

    listing = actions.add_parser(
        "list", help="list keys (prefix, name, scopes, expiry, revoked/expired; never the key)"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)

    revoke = actions.add_parser(
        "revoke", help="revoke a key, by prefix or by name (final: it cannot be undone)"
    )
    revoke.add_argument("key", metavar="NAME|PREFIX")
    revoke.add_argument("--json", action="store_true", help="machine-readable output")
    revoke.set_defaults(handler=_revoke)
