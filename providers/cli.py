"""``configsync provider set|list|delete``: AI provider credentials from the command line.

``--api-key -`` reads the key from standard input, keeping it out of shell history and ``ps``::

    printf '%s' "$OPENAI_API_KEY" | python manage.py configsync provider set openai-main \\
        --kind openai --api-key -

Changing where a stored key is sent (``--base-url``, ``--endpoint``, ``--kind``) without giving
``--api-key`` again needs ``--yes``: the key will be sent to the new destination.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from configsync.api.serializers import closest
from configsync.cli import validation_sentences
from configsync.cli.config import read_value_argument, write_table
from configsync.logging import MASK
from configsync.services.audit import RevealRequired
from providers.models import AIProviderConfig
from providers.registry import KINDS, OPTION_FIELDS
from providers.selectors import ai_provider_list
from providers.services import DESTINATION_FIELDS, ai_provider_delete, ai_provider_set

# Command-line option -> model field, for the options that are not named like their field.
_OPTION_DESTS = {"model": "default_model"}


def provider_as_dict(record: AIProviderConfig) -> dict[str, Any]:
    """The JSON form of a provider; the API key is only ever shown as a mask."""
    data: dict[str, Any] = {"name": record.name, "kind": record.kind}
    for name in OPTION_FIELDS:
        if name == "api_key":
            data[name] = MASK if record.has_api_key else None
        else:
            data[name] = getattr(record, name)
    data.update(
        has_api_key=record.has_api_key,
        enabled=record.enabled,
        is_default=record.is_default,
        created_at=record.created_at.isoformat(),
        updated_at=record.updated_at.isoformat(),
    )
    return data


def unknown_kind_message(kind: str) -> str:
    """``kind: Unknown provider kind; did you mean azure_openai?`` — never echoing the input
    (a key pasted into the wrong option must not be printed)."""
    suggestion = closest(kind, list(KINDS))
    hint = f"did you mean {suggestion}?" if suggestion else f"use one of {', '.join(KINDS)}."
    return f"kind: Unknown provider kind; {hint}"


def _set(command: BaseCommand, options: dict[str, Any]) -> None:
    if options["kind"] is not None and options["kind"] not in KINDS:
        raise CommandError(unknown_kind_message(options["kind"]), returncode=1)
    # Any: the option fields are str | None, and mypy cannot tell them from the service's flags.
    fields: dict[str, Any] = {name: options.get(name) for name in OPTION_FIELDS}
    if fields["api_key"] is not None:
        fields["api_key"] = read_value_argument(fields["api_key"], what="--api-key")
    try:
        record = ai_provider_set(
            name=options["name"],
            kind=options["kind"],
            enabled=options["enabled"],
            is_default=options["default"],
            allow_reveal=options["yes"],
            **fields,
        )
    except ValidationError as exc:
        raise CommandError(validation_sentences(exc), returncode=1) from None
    except RevealRequired:
        flags = ", ".join("--" + name.replace("_", "-") for name in DESTINATION_FIELDS)
        raise CommandError(
            f"{options['name']} holds an API key and {flags} change where it is sent; "
            "add --yes to send it to the new destination, or give --api-key again",
            returncode=1,
        ) from None
    if options["json"]:
        command.stdout.write(json.dumps(provider_as_dict(record), indent=2))
        return
    flags = ", ".join(
        flag
        for flag, on in (
            ("default", record.is_default),
            ("disabled", not record.enabled),
            ("api key set", record.has_api_key),
        )
        if on
    )
    command.stdout.write(f"saved {record.name} ({record.kind}{', ' + flags if flags else ''})")


def _list(command: BaseCommand, options: dict[str, Any]) -> None:
    records = list(ai_provider_list())
    if options["json"]:
        command.stdout.write(json.dumps([provider_as_dict(r) for r in records], indent=2))
        return
    if not records:
        command.stdout.write("no providers")
        return
    rows = [("NAME", "KIND", "ENABLED", "DEFAULT", "API KEY", "MODEL")]
    for r in records:
        rows.append(
            (
                r.name,
                r.kind,
                "yes" if r.enabled else "no",
                "yes" if r.is_default else "no",
                "set" if r.has_api_key else "not set",
                r.default_model,
            )
        )
    write_table(command, rows)


def _delete(command: BaseCommand, options: dict[str, Any]) -> None:
    ai_provider_delete(name=options["name"])
    if options["json"]:
        command.stdout.write(json.dumps({"name": options["name"], "deleted": True}))
        return
    command.stdout.write(f"deleted {options['name']}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``provider set``, ``provider list`` and ``provider delete``."""
    provider = subparsers.add_parser("provider", help="AI provider credentials")
    actions = provider.add_subparsers(dest="provider_action", metavar="ACTION", required=True)

    set_parser = actions.add_parser(
        "set",
        help="create or update a provider",
        description="Create or update a provider. Options left out keep their current value; "
        "an empty string clears one. --api-key - reads the key from standard input.",
    )
    set_parser.add_argument("name", metavar="NAME")
    set_parser.add_argument(
        "--kind", default=None, help=f"one of {', '.join(KINDS)} (required to create)"
    )
    set_parser.add_argument("--api-key", dest="api_key", default=None, metavar="KEY")
    set_parser.add_argument("--base-url", dest="base_url", default=None, metavar="URL")
    set_parser.add_argument(
        "--model", dest=_OPTION_DESTS["model"], default=None, metavar="MODEL", help="default model"
    )
    set_parser.add_argument("--organization", default=None, help="OpenAI organization id")
    set_parser.add_argument("--endpoint", default=None, metavar="URL", help="Azure endpoint")
    set_parser.add_argument("--api-version", dest="api_version", default=None, help="Azure")
    set_parser.add_argument("--deployment", default=None, help="Azure deployment name")
    enabled = set_parser.add_mutually_exclusive_group()
    enabled.add_argument("--enable", dest="enabled", action="store_const", const=True)
    enabled.add_argument("--disable", dest="enabled", action="store_const", const=False)
    default = set_parser.add_mutually_exclusive_group()
    default.add_argument(
        "--default", dest="default", action="store_const", const=True, help="make it the default"
    )
    default.add_argument("--no-default", dest="default", action="store_const", const=False)
    set_parser.add_argument(
        "--yes",
        action="store_true",
        help="confirm sending the stored API key to a changed --base-url/--endpoint/--kind",
    )
    set_parser.add_argument("--json", action="store_true", help="machine-readable output")
    set_parser.set_defaults(handler=_set, enabled=None, default=None)

    list_parser = actions.add_parser("list", help="list providers (API keys never shown)")
    list_parser.add_argument("--json", action="store_true", help="machine-readable output")
    list_parser.set_defaults(handler=_list)

    delete_parser = actions.add_parser("delete", help="delete a provider")
    delete_parser.add_argument("name", metavar="NAME")
    delete_parser.add_argument("--json", action="store_true", help="machine-readable output")
    delete_parser.set_defaults(handler=_delete)
