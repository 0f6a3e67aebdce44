"""``configsync nats follow [--once [--json]]``, ``configsync nats status [--json]``,
``configsync nats snapshot [--json]``: the NATS JetStream transport's follower, its consumer lag,
and this node's snapshot in the group's object store (``configsync.replication.natsfollow``)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from configsync.conf import app_settings
from configsync.replication.errors import TransportError
from configsync.replication.natsfollow.loop import NatsFollower
from configsync.replication.natsfollow.service import (
    nats_follow_once,
    nats_snapshot_write,
    nats_status,
)
from configsync.replication.services.cycle import SyncCycleError
from configsync.replication.services.sync import sync_summary


def register(subparsers: argparse._SubParsersAction) -> None:
    nats = subparsers.add_parser(
        "nats", help="The NATS JetStream transport: follow the stream, its lag, snapshots."
    )
    actions = nats.add_subparsers(dest="nats_action", required=True)
    follow = actions.add_parser(
        "follow",
        help="Apply the group's stream as it arrives until stopped (SIGTERM); idles when "
        "CONFIGSYNC_NATS_URL is not set.",
    )
    follow.add_argument(
        "--once",
        action="store_true",
        help="One pull cycle through the durable consumer, then exit.",
    )
    follow.add_argument(
        "--json", action="store_true", help="With --once: the cycle's result, machine-readable."
    )
    follow.set_defaults(handler=handle_follow)
    status = actions.add_parser(
        "status", help="This node's consumer lag, the stream's retention, the newest snapshot."
    )
    status.add_argument("--json", action="store_true", help="Machine-readable output.")
    status.set_defaults(handler=handle_status)
    snapshot = actions.add_parser(
        "snapshot",
        help="Store this node's state in the group's object store, for nodes that come back "
        "after the stream's retention dropped what they missed.",
    )
    snapshot.add_argument("--json", action="store_true", help="Machine-readable output.")
    snapshot.set_defaults(handler=handle_snapshot)


def handle_follow(command: BaseCommand, options: dict[str, Any]) -> None:
    if options["once"]:
        if not app_settings.nats_configured:
            raise CommandError("the NATS transport is not configured: set CONFIGSYNC_NATS_URL")
        try:
            result = nats_follow_once()
        except SyncCycleError as exc:
            raise CommandError(str(exc), returncode=1) from None
        if result is None:
            raise CommandError("nothing followed: the nats peer is disabled, busy or not used")
        if options["json"]:
            command.stdout.write(json.dumps(result.as_dict(), cls=DjangoJSONEncoder))
        else:
            command.stdout.write(sync_summary(result))
        return
    # A service, like the worker: its INFO lines (one per cycle) are its log, which the command
    # otherwise keeps for ``-v 2`` (the command restores the level when it returns).
    logging.getLogger("configsync").setLevel(logging.INFO)
    stop = threading.Event()

    def stopped(*_: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopped)
    NatsFollower(stop=stop).run()


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "never"


def handle_status(command: BaseCommand, options: dict[str, Any]) -> None:
    report = nats_status(snapshots=True)
    if options["json"]:
        command.stdout.write(json.dumps(report.as_dict(), cls=DjangoJSONEncoder, indent=2))
        return
    out = command.stdout
    if not report.configured:
        out.write("nats: not configured (CONFIGSYNC_NATS_URL is not set)")
        return
    used = "" if report.followed else " (not followed: disabled or not used in this mode)"
    out.write(f"nats: {report.server}, stream {report.stream}, consumer {report.consumer}{used}")
    if not report.reachable:
        raise CommandError(f"nats: unreachable: {report.error}", returncode=1)
    out.write(
        f"lag: {report.lag} (pending {report.pending}, unacknowledged {report.ack_pending}); "
        f"stream holds {report.stream_first_seq}..{report.stream_last_seq}, acknowledged up to "
        f"{report.ack_floor_seq}"
    )
    age = f"{report.max_age_seconds:g} s" if report.max_age_seconds else "no age limit"
    count = f"{report.max_msgs} messages" if report.max_msgs else "no count limit"
    out.write(f"retention: {age}, {count}")
    if report.snapshot_covers is None:
        out.write("snapshot: none")
    else:
        out.write(
            f"snapshot: up to {report.snapshot_covers} by {report.snapshot_writer}, "
            f"{_when(report.snapshot_taken_at)}"
        )


def handle_snapshot(command: BaseCommand, options: dict[str, Any]) -> None:
    try:
        written = nats_snapshot_write()
    except TransportError as exc:
        raise CommandError(str(exc), returncode=1) from None
    if options["json"]:
        command.stdout.write(json.dumps(written.__dict__))
        return
    command.stdout.write(
        f"snapshot stored in {written.bucket}: {written.items} items covering the stream up to "
        f"{written.covers} ({written.size_bytes} bytes)"
    )
