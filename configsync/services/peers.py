"""Peers of this node: seeding from ``CONFIGSYNC_PEERS`` and the reads the scheduler needs."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_slug
from django.db import transaction
from django.db.models import QuerySet

from configsync.conf import app_settings
from configsync.models import Peer


def peers_parse_setting(entries: list[str] | str) -> list[tuple[str, str]]:
    """Parse ``CONFIGSYNC_PEERS`` (``name=base_url`` items); ``ValidationError`` naming the item."""
    if isinstance(entries, str):
        entries = [part for part in entries.split(",")]
    parsed: list[tuple[str, str]] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        if not sep or not name or not url:
            raise ValidationError(f"CONFIGSYNC_PEERS: {entry!r} is not name=base_url")
        try:
            validate_slug(name)
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            raise ValidationError(
                f"CONFIGSYNC_PEERS: {entry!r} needs a slug name and an http(s) URL"
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


def tombstones_collect() -> int:
    """Delete tombstones every known peer has acknowledged; return how many were deleted.

    A peer has acknowledged a tombstone when our push checkpoint with it is at or past the
    tombstone's sequence (it answered the push that carried it) or when it sent us the tombstone
    itself. Disabled peers count: they may come back. With no peers at all, every tombstone goes.
    """
    from django.db.models import Q

    from configsync.models import PeerCheckpoint, ReplicatedRecord
    from configsync.replication.errors import CursorError
    from configsync.selectors.replication import cursor_parse, feed_last_cursor

    epoch = cursor_parse(feed_last_cursor()).epoch
    condition = Q(deleted=True)
    for peer in Peer.objects.all():
        checkpoint = PeerCheckpoint.objects.filter(
            peer=peer, direction=PeerCheckpoint.Direction.PUSH
        ).first()
        acked = 0
        if checkpoint is not None:
            try:
                position = cursor_parse(checkpoint.cursor)
            except CursorError:
                position = None
            if position is not None and (not position.epoch or position.epoch == epoch):
                acked = position.seq
        by_peer = Q(seq__lte=acked)
        if peer.node_id:
            by_peer |= Q(received_from=peer.node_id)
        condition &= by_peer
    with transaction.atomic():
        deleted, _ = ReplicatedRecord.objects.filter(condition).delete()
    return deleted
