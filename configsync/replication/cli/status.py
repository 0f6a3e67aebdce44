"""``configsync status [--json]``: this node's replication status, per peer."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder

from configsync.replication.natsfollow.service import NatsStatus, nats_status
from configsync.replication.selectors.status import sync_status
from configsync.services.node import node_id


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="Replication status: last success, errors, lag, conflicts per peer."
    )
    parser.add_argument("--json", action="store_true", help="Machine-readable output.")
    parser.set_defaults(handler=handle)


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "never"


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    report = sync_status(node=node_id())
    nats = nats_status()
    if options["json"]:
        document = {**report.as_dict(), "nats": nats.as_dict()}
        command.stdout.write(json.dumps(document, cls=DjangoJSONEncoder, indent=2))
        return
    out = command.stdout
    for warning in report.warnings:
        out.write(f"WARNING: {warning}")
    out.write(f"node {report.node_id} ({report.deployment_mode})")
    interval = report.sync_interval_seconds
    out.write(f"sync every {interval}s" if interval else "periodic sync disabled")
    out.write(f"feed at seq {report.last_seq}; open conflicts: {report.open_conflicts}")
    if report.unreadable_records:
        out.write(f"unreadable records (missing key): {report.unreadable_records}")
    out.write(f"quarantined changes (open): {report.open_quarantined}")
    clock = report.clock
    out.write(
        f"clock: {clock.state}; timestamps issued {clock.hlc_ahead_ms} ms ahead of this "
        f"machine's clock; allowed skew {clock.max_skew_ms} ms, warning above {clock.warning_ms} ms"
    )
    if not report.peers:
        out.write("no peers (HTTP peers, external database or bucket)")
    for peer in report.peers:
        rate = "n/a" if peer.success_rate is None else f"{peer.success_rate:.0%}"
        state = {True: "ok", False: "failing", None: "not synced yet"}[peer.last_run_ok]
        where = peer.base_url if peer.transport == "http" else f"({peer.transport})"
        unused = "" if peer.in_mode else " (not used in this deployment mode)"
        out.write(
            f"peer {peer.name} {where}{'' if peer.enabled else ' (disabled)'}{unused}: {state}"
        )
        out.write(f"  last success: {_when(peer.last_success_at)}")
        if peer.last_error:
            out.write(f"  last error: {_when(peer.last_error_at)} {peer.last_error}")
        out.write(
            f"  changes behind: {peer.changes_behind}; success rate: {rate} of "
            f"{peer.recent_runs} runs; open conflicts: {peer.open_conflicts}; "
            f"clock skew: {'n/a' if peer.clock_skew_ms is None else f'{peer.clock_skew_ms} ms'}"
            f"{'' if peer.clock_state == 'ok' else f' ({peer.clock_state.upper()})'}"
        )
        if peer.open_quarantined or peer.quarantined_last_run:
            out.write(
                f"  quarantined here from it (open): {peer.open_quarantined}; "
                f"set aside in the last run: {peer.quarantined_last_run}"
            )
    _nats_lines(command, nats)


def _nats_lines(command: BaseCommand, nats: NatsStatus) -> None:
    if not nats.configured:
        return
    out = command.stdout
    if not nats.reachable:
        out.write(f"nats: stream {nats.stream or '?'} UNREACHABLE: {nats.error}")
        return
    followed = "" if nats.followed else " (not followed in this mode)"
    out.write(
        f"nats: stream {nats.stream} at {nats.server}{followed}: consumer lag {nats.lag} "
        f"({nats.pending} not delivered, {nats.ack_pending} not acknowledged)"
    )
