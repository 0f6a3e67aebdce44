"""``configsync diff``: how this node's records compare with a peer's, by version."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from configsync.models import Peer, ReplicatedRecord
from configsync.replication.errors import TransportError
from configsync.replication.hlc import HLC, HLCParseError
from configsync.replication.services.cycle import MAX_PAGES, feed_advances
from configsync.replication.services.link import peer_link
from configsync.replication.transports.base import Transport


@dataclass
class SyncDiff:
    """How this node's records compare with a peer's, by version (never by value)."""

    peer: str
    same: int = 0
    only_local: list[dict[str, Any]] = field(default_factory=list)
    only_remote: list[dict[str, Any]] = field(default_factory=list)
    differ: list[dict[str, Any]] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not (self.only_local or self.only_remote or self.differ)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_sync": self.in_sync}


def _newer(hlc: str, than: str) -> bool:
    try:
        return HLC.parse(hlc) > HLC.parse(than)
    except HLCParseError:
        return False


def sync_diff(*, peer_id: int, transport: Transport | None = None) -> SyncDiff:
    """Compare every record's version here with the peer's (its digest endpoint; for a shared
    medium, the winning version among its writers').

    A record only one side has is listed unless that side holds a tombstone; records whose HLC
    differs are listed with both timestamps. ``TransportError`` when the peer cannot answer, or
    when part of a shared medium cannot be read (its ``faults``).
    """
    peer = Peer.objects.get(pk=peer_id)
    remote: dict[tuple[str, str], tuple[str, bool]] = {}
    cursor = ""
    with peer_link(peer, transport) as link:
        for _ in range(MAX_PAGES):
            page = link.digest(cursor, 1000)
            feed_advances(peer.name, cursor, page)
            for item in page.changes:
                if not isinstance(item, dict):
                    raise TransportError(f"peer {peer.name} answered garbage (digest)")
                ident = (str(item.get("model")), str(item.get("key")))
                version = (str(item.get("hlc")), bool(item.get("deleted")))
                # A shared medium lists one version per writer: the remote's is the winner.
                if ident not in remote or _newer(version[0], remote[ident][0]):
                    remote[ident] = version
            cursor = page.next_cursor
            if not page.has_more:
                break
        if link.faults:
            # Part of a shared medium could not be read (a damaged segment or row): what was
            # read may hold an older version than the medium does, so no comparison is true.
            raise TransportError(f"{peer.name}: " + "; ".join(link.faults[:5]))
    local = {
        (label, key): (hlc, deleted)
        for label, key, hlc, deleted in ReplicatedRecord.objects.values_list(
            "model_label", "natural_key", "hlc", "deleted"
        ).iterator()
    }
    diff = SyncDiff(peer=peer.name)
    for ident in sorted(set(local) | set(remote)):
        mine, theirs = local.get(ident), remote.get(ident)
        entry = {
            "model": ident[0],
            "key": ident[1],
            "local_hlc": mine[0] if mine else None,
            "remote_hlc": theirs[0] if theirs else None,
        }
        if mine and theirs:
            if mine[0] == theirs[0] or (mine[1] and theirs[1]):
                diff.same += 1
            else:
                diff.differ.append(entry)
        elif mine:
            if mine[1]:
                diff.same += 1
            else:
                diff.only_local.append(entry)
        elif theirs:
            if theirs[1]:
                diff.same += 1
            else:
                diff.only_remote.append(entry)
    return diff
