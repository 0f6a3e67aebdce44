"""Peers of this node: seeding from ``CONFIGSYNC_PEERS``, the reads the scheduler needs, and
collecting tombstones every peer has."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from configsync.conf import app_settings, parse_peers
from configsync.models import Peer, PeerCheckpoint, ReplicatedRecord
from configsync.replication.selectors.feed import feed_positions
from configsync.replication.selectors.quarantine import quarantine_retryable_keys

logger = logging.getLogger(__name__)

TOMBSTONE_MIN_AGE = timedelta(days=7)
"""A tombstone is kept at least this long, even once every known peer has it.

Acknowledgement covers the peers this node knows. A peer added later (or removed and added
again, or restored from an older backup) that still holds the record would resurrect it once its
tombstone is gone; a week covers the usual time to wire a new node in.
"""


EXTERNAL_DATABASE_PEER = Peer.MEDIA_NAMES["database"]
"""The peer that stands for the shared database of ``EXTERNAL_DATABASE_URL``."""
BUCKET_PEER = Peer.MEDIA_NAMES["bucket"]
"""The peer that stands for the bucket of ``CONFIGSYNC_R2_*``."""
NATS_PEER = Peer.MEDIA_NAMES["nats"]
"""The peer that stands for the JetStream stream of ``CONFIGSYNC_NATS_URL``."""


def media_wanted() -> dict[str, str]:
    """The shared media the settings configure, as ``{peer name: transport kind}``."""
    media: dict[str, str] = {}
    if app_settings.external_database_url:
        media[EXTERNAL_DATABASE_PEER] = Peer.TransportKind.DATABASE
    if app_settings.bucket_configured:
        media[BUCKET_PEER] = Peer.TransportKind.BUCKET
    if app_settings.nats_configured:
        media[NATS_PEER] = Peer.TransportKind.NATS
    return media


@transaction.atomic
def peer_seed_from_settings() -> list[Peer]:
    """Make the peers match ``CONFIGSYNC_PEERS`` and the media the settings configure
    (``external-db`` for ``EXTERNAL_DATABASE_URL``, ``r2`` for ``CONFIGSYNC_R2_*``); idempotent.
    Returns the peers they name.

    * A named peer that does not exist is created, enabled and marked ``seeded``.
    * A named peer that exists gets the setting's base URL and is marked ``seeded`` (the
      setting now owns it); its ``enabled`` flag is left alone, so an operator's "disabled"
      in the admin survives every beat.
    * A ``seeded`` peer the setting no longer names is disabled and unmarked: it is not synced
      again until someone enables it in the admin (or deletes it). Its checkpoints and history
      stay, and it still counts for tombstone collection (it may come back).
    * Peers added in the admin (never named by the setting) are left alone.

    ``ValidationError`` (naming the item, never quoting it) when the setting is malformed; then
    nothing changes.
    """
    wanted: dict[str, tuple[str, str]] = {
        name: (Peer.TransportKind.HTTP, url) for name, url in parse_peers(app_settings.PEERS)
    }
    for name, kind in media_wanted().items():
        if name in wanted:
            raise ValidationError(
                f"CONFIGSYNC_PEERS: the name {name!r} is reserved for the {kind} transport"
            )
        wanted[name] = (kind, "")
    peers: list[Peer] = []
    for name, (kind, url) in wanted.items():
        peer, created = Peer.objects.select_for_update().get_or_create(
            name=name, defaults={"base_url": url, "seeded": True, "transport": kind}
        )
        if not created and (peer.base_url != url or not peer.seeded or peer.transport != kind):
            peer.base_url = url
            peer.seeded = True
            peer.transport = kind
            peer.save(update_fields=["base_url", "seeded", "transport", "updated_at"])
        peers.append(peer)
    removed = Peer.objects.select_for_update().filter(seeded=True).exclude(name__in=list(wanted))
    for peer in removed:
        peer.enabled = False
        peer.seeded = False
        peer.save(update_fields=["enabled", "seeded", "updated_at"])
        logger.warning(
            "peer %s is no longer named by CONFIGSYNC_PEERS: disabled (delete it in the admin "
            "to forget it)",
            peer.name,
        )
    return peers


_COLLECT_BATCH = 500


def tombstones_collect() -> int:
    """Delete tombstones every known peer has acknowledged; return how many were deleted.

    A peer has acknowledged a tombstone when our push checkpoint with it is at or past the
    tombstone's sequence (it answered the push that carried it) or when it sent us the tombstone
    itself. Disabled peers count: they may come back. Whatever the acknowledgements, a tombstone
    younger than ``TOMBSTONE_MIN_AGE`` stays (a peer added later may still hold the record); with
    no peers at all, every older tombstone goes. A tombstone of a record that a quarantined change
    (open or dropped) names stays too: retrying that change must meet the tombstone and answer
    ``stale``, not bring the deleted record back.
    """
    pushed = dict(
        PeerCheckpoint.objects.filter(direction=PeerCheckpoint.Direction.PUSH).values_list(
            "peer_id", "cursor"
        )
    )
    # ``deleted`` and ``updated_at`` first: the partial index on the tombstones' age
    # (migration 0007) serves the pass, whatever the number of live records.
    condition = Q(deleted=True, updated_at__lt=timezone.now() - TOMBSTONE_MIN_AGE)
    peers = list(Peer.objects.values_list("id", "node_id"))
    positions = feed_positions([pushed.get(peer_id) for peer_id, _ in peers])
    for (_, peer_node), position in zip(peers, positions, strict=True):
        by_peer = Q(seq__lte=position)
        if peer_node:
            by_peer |= Q(received_from=peer_node)
        condition &= by_peer
    for label, keys in quarantine_retryable_keys().items():
        condition &= ~Q(model_label=label, natural_key__in=sorted(keys))
    total = 0
    while True:
        with transaction.atomic():
            # Lock, then delete by id: the condition is re-checked under the lock, so a tombstone
            # a concurrent write is turning back into a live record is never deleted.
            ids = list(
                ReplicatedRecord.objects.select_for_update()
                .filter(condition)
                .values_list("pk", flat=True)[:_COLLECT_BATCH]
            )
            deleted, _ = ReplicatedRecord.objects.filter(pk__in=ids).delete()
        total += deleted
        if len(ids) < _COLLECT_BATCH:
            return total
