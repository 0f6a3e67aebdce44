"""``configsync sync [--peer NAME] [--json]``, ``diff --peer NAME [--json]``,
``conflicts [--json]``, ``resolve ID local|remote [--json]``: replication from the command line
(``status`` is in ``cli/status``).

``--json`` uses the API's names: ``sync`` prints ``{"warnings": [...], "results": [...]}`` with one
``SyncResult.as_dict()`` per peer (a failed cycle ``ok: false`` with its ``error``; a busy peer
``ok: false``, ``error: "busy: ..."``; the failure is still the one line on stderr and exit 1);
``conflicts`` and ``resolve`` print conflicts as ``/api/v1/sync/conflicts/`` does.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from configsync.cli import cli_may_reveal
from configsync.models import Conflict, Peer
from configsync.replication.errors import ConflictResolveError, TransportError
from configsync.replication.selectors.conflicts import conflicts_list
from configsync.replication.selectors.mode import (
    cycle_mode,
    deployment_mode,
    mode_problems,
    mode_transports,
)
from configsync.replication.selectors.peers import peers_enabled
from configsync.replication.services.conflicts import conflict_resolve
from configsync.replication.services.cycle import SyncCycleError, SyncResult
from configsync.replication.services.diff import sync_diff
from configsync.replication.services.peers import peer_seed_from_settings
from configsync.replication.services.sync import BUSY_WAIT_SECONDS, peer_sync, sync_summary


def register(subparsers: argparse._SubParsersAction) -> None:
    sync = subparsers.add_parser(
        "sync", help="Run one full-duplex cycle now with every enabled peer (or one)."
    )
    sync.add_argument("--peer", metavar="NAME", help="Only this peer.")
    sync.add_argument("--json", action="store_true", help="Machine-readable output.")
    sync.set_defaults(handler=handle_sync)

    diff = subparsers.add_parser("diff", help="Compare this node's records with a peer's.")
    diff.add_argument("--peer", metavar="NAME", required=True, help="The peer to compare with.")
    diff.add_argument("--json", action="store_true", help="Machine-readable output.")
    diff.set_defaults(handler=handle_diff)

    conflicts = subparsers.add_parser("conflicts", help="List conflicts (never values).")
    conflicts.add_argument("--json", action="store_true", help="Machine-readable output.")
    conflicts.add_argument("--all", action="store_true", help="Resolved ones too.")
    conflicts.set_defaults(handler=handle_conflicts)

    resolve = subparsers.add_parser(
        "resolve", help="Resolve a conflict: write the chosen version as a new change."
    )
    resolve.add_argument("id", type=int, help="Conflict id (see `configsync conflicts`).")
    resolve.add_argument("choice", choices=["local", "remote"], help="The version to keep.")
    resolve.add_argument("--json", action="store_true", help="Machine-readable output.")
    resolve.set_defaults(handler=handle_resolve)


def _peer(name: str) -> Peer:
    peer = Peer.objects.filter(name=name).first()
    if peer is None:
        raise CommandError(f"no peer named {name!r}", returncode=1)
    return peer


def _summary(result: SyncResult) -> str:
    return f"peer {result.peer}: {sync_summary(result)}"


_BUSY = "busy: another cycle holds it"


def handle_sync(command: BaseCommand, options: dict[str, Any]) -> None:
    peer_seed_from_settings()
    mode = deployment_mode()
    as_json = options["json"]
    warnings = mode_problems(mode=mode)
    if not as_json:
        for problem in warnings:
            command.stdout.write(f"WARNING: {problem}")
    if cycle_mode() == "LOCAL_ONLY":
        raise CommandError(
            "deployment mode LOCAL_ONLY: nothing syncs (see `configsync mode show`)", returncode=1
        )
    peers = [_peer(options["peer"])] if options["peer"] else list(peers_enabled())
    if not peers:
        raise CommandError(
            f"no peers for deployment mode {cycle_mode()}: set CONFIGSYNC_PEERS (or add a peer "
            "in the admin), EXTERNAL_DATABASE_URL or CONFIGSYNC_R2_*",
            returncode=1,
        )
    for peer in peers:
        if peer.transport not in mode_transports():
            raise CommandError(
                f"peer {peer.name} uses the {peer.transport} transport, which deployment mode "
                f"{cycle_mode()} does not use (see `configsync mode show`)",
                returncode=1,
            )
    failed: list[str] = []
    results: list[SyncResult] = []
    for peer in peers:
        # The same policy (lock, expiry, summary) as the Celery task (configsync.tasks.sync_peer).
        try:
            result = peer_sync(peer_id=peer.pk, wait_seconds=BUSY_WAIT_SECONDS)
        except SyncCycleError as exc:
            failed.append(f"{peer.name} ({exc})")
            results.append(exc.result)
            if not as_json:
                command.stdout.write(f"{_summary(exc.result)}; FAILED")
            continue
        if result is None:
            failed.append(f"{peer.name} ({_BUSY})")
            results.append(SyncResult(peer=peer.name, peer_id=peer.pk, error=_BUSY))
            if not as_json:
                command.stdout.write(f"peer {peer.name}: busy, skipped")
            continue
        results.append(result)
        if not as_json:
            command.stdout.write(_summary(result))
    if as_json:
        document = {"warnings": warnings, "results": [r.as_dict() for r in results]}
        command.stdout.write(json.dumps(document, indent=2))
    if failed:
        raise CommandError(f"sync failed with {'; '.join(failed)}", returncode=1)


def handle_diff(command: BaseCommand, options: dict[str, Any]) -> None:
    peer = _peer(options["peer"])
    try:
        diff = sync_diff(peer_id=peer.pk)
    except TransportError as exc:
        raise CommandError(str(exc), returncode=1) from None
    if options["json"]:
        command.stdout.write(json.dumps(diff.as_dict(), indent=2))
        return
    out = command.stdout
    out.write(
        f"peer {peer.name}: {diff.same} same, {len(diff.differ)} differ, "
        f"{len(diff.only_local)} only here, {len(diff.only_remote)} only there"
    )
    for title, entries in (
        ("differ", diff.differ),
        ("only here", diff.only_local),
        ("only there", diff.only_remote),
    ):
        for entry in entries:
            out.write(
                f"  {title}: {entry['model']} {entry['key']} "
                f"(here {entry['local_hlc'] or '-'}, there {entry['remote_hlc'] or '-'})"
            )


def _conflict_row(conflict: Conflict) -> dict[str, Any]:
    """A conflict with the fields of the API's ``ConflictSerializer`` (never a value)."""
    return {
        "id": conflict.pk,
        "model": conflict.model_label,
        "key": conflict.natural_key,
        "source": conflict.source,
        "status": conflict.status,
        "winner": conflict.winner,
        "resolution": conflict.resolution,
        "detected_at": conflict.detected_at,
        "resolved_at": conflict.resolved_at,
        "skew_affected": conflict.skew_affected,
        "local": conflict.local.summary(),
        "remote": conflict.remote.summary(),
        "changed_fields": conflict.changed_fields(),
    }


def handle_conflicts(command: BaseCommand, options: dict[str, Any]) -> None:
    rows = [
        _conflict_row(conflict)
        for conflict in conflicts_list(status=None if options["all"] else "open")
    ]
    if options["json"]:
        command.stdout.write(json.dumps(rows, cls=DjangoJSONEncoder, indent=2))
        return
    if not rows:
        command.stdout.write("no conflicts")
        return
    for row in rows:
        fields = ", ".join(row["changed_fields"]) or "-"
        skew = " (SKEW-AFFECTED: clock skew may have decided it)" if row["skew_affected"] else ""
        command.stdout.write(
            f"{row['id']}: {row['model']} {row['key']} from {row['source']} "
            f"[{row['status']}] winner {row['winner']}"
            f"{skew}; "
            f"local {row['local']['hlc']}{' (deleted)' if row['local']['deleted'] else ''}, "
            f"remote {row['remote']['hlc']}{' (deleted)' if row['remote']['deleted'] else ''}; "
            f"fields: {fields}"
        )


def handle_resolve(command: BaseCommand, options: dict[str, Any]) -> None:
    try:
        conflict = conflict_resolve(
            conflict_id=options["id"], choice=options["choice"], allow_reveal=cli_may_reveal()
        )
    except ConflictResolveError as exc:
        raise CommandError(str(exc), returncode=1) from None
    if options["json"]:
        command.stdout.write(json.dumps(_conflict_row(conflict), cls=DjangoJSONEncoder, indent=2))
        return
    command.stdout.write(
        f"conflict {conflict.pk} resolved: kept the {conflict.resolution} version of "
        f"{conflict.model_label} {conflict.natural_key} as a new change"
    )
