"""Peers of this node: seeding from ``CONFIGSYNC_PEERS``, the reads the scheduler needs, and
collecting tombstones every peer has."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_slug
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from configsync.conf import app_settings
from configsync.models import Peer, PeerCheckpoint, ReplicatedRecord
from configsync.selectors.replication import feed_position

TOMBSTONE_MIN_AGE = timedelta(days=7)
"""A tombstone is kept at least this long, even once every known peer has it.

Acknowledgement covers the peers this node knows. A peer added later (or removed and added
again, or restored from an older backup) that still holds the record would resurrect it once its
tombstone is gone; a week covers the usual time to wire a new node in.
"""


def peers_parse_setting(entries: list[str] | str) -> list[tuple[str, str]]:
    """Parse ``CONFIGSYNC_PEERS`` (``name=base_url`` items); ``ValidationError`` naming the item."""
    if isinstance(entries, str):
        entries = [part for part in entries.split(",")]
    parsed: list[tuple[str, str]] = []
    for position, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        # Name the item by position, never quote it: a URL may carry credentials.
        if not sep or not name or not url:
            raise ValidationError(f"CONFIGSYNC_PEERS: item {position} is not name=base_url")
        try:
            validate_slug(name)
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            raise ValidationError(
                f"CONFIGSYNC_PEERS: item {position} needs a slug name and an http(s) URL"
            ) from None
        parsed.append((name, url))
    return parsed


@transaction.atomic
def peer_seed_from_settings() -> list[Peer]:
    """Create or update a ``Peer`` per ``CONFIGSYNC_PEERS`` entry; idempotent.

    Only the base URL of an existing peer is updated; peers added in the admin and the
    ``enabled`` flag are left alone. Returns the peers named by the setting.
    """
    peers: list[Peer] = []
    for name, url in peers_parse_setting(app_settings.PEERS):
        peer, created = Peer.objects.select_for_update().get_or_create(
            name=name, defaults={"base_url": url}
        )
        if not created and peer.base_url != url:
            peer.base_url = url
            peer.save(update_fields=["base_url", "updated_at"])
        peers.append(peer)
    return peers


def peers_enabled() -> QuerySet[Peer]:
    """The peers to sync with, by name."""
    return Peer.objects.filter(enabled=True).order_by("name")


def peer_get_by_name(name: str) -> Peer:
    """The peer called ``name``; ``Peer.DoesNotExist`` otherwise."""
    return Peer.objects.get(name=name)


_COLLECT_BATCH = 500


def tombstones_collect() -> int:
    """Delete tombstones every known peer has acknowledged; return how many were deleted.

    A peer has acknowledged a tombstone when our push checkpoint with it is at or past the
    tombstone's sequence (it answered the push that carried it) or when it sent us the tombstone
    itself. Disabled peers count: they may come back. Whatever the acknowledgements, a tombstone
    younger than ``TOMBSTONE_MIN_AGE`` stays (a peer added later may still hold the record); with
    no peers at all, every older tombstone goes.
    """
    pushed = dict(
        PeerCheckpoint.objects.filter(direction=PeerCheckpoint.Direction.PUSH).values_list(
            "peer_id", "cursor"
        )
    )
    condition = Q(deleted=True, updated_at__lt=timezone.now() - TOMBSTONE_MIN_AGE)
    for peer_id, peer_node in Peer.objects.values_list("id", "node_id"):
        by_peer = Q(seq__lte=feed_position(pushed.get(peer_id)))
        if peer_node:
            by_peer |= Q(received_from=peer_node)
        condition &= by_peer
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
