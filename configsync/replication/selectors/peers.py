"""Reads of the peers: which ones the beat, a sync requested now, or the CLI covers."""

from __future__ import annotations

from django.db.models import Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, NullIf

from configsync.conf import app_settings
from configsync.exceptions import ConfigsyncError
from configsync.models import NodeIdentity, Peer
from configsync.replication.selectors.mode import mode_transports
from configsync.replication.strategies import MODE_TRANSPORTS, transports_of


class UnknownPeerError(ConfigsyncError):
    """No peer has the given name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no peer named {name!r}")


def peers_enabled() -> QuerySet[Peer]:
    """The enabled peers whose transport this node's deployment mode uses (read now), by name:
    none in ``LOCAL_ONLY``, HTTP peers and the external database in ``LOCAL_EXTERNAL``, the
    bucket in ``LOCAL_R2``, all of them in ``LOCAL_EXTERNAL_R2``."""
    return Peer.objects.filter(enabled=True, transport__in=mode_transports()).order_by("name")


def peers_enabled_ids() -> list[int]:
    """The ids of :func:`peers_enabled`, by name, in one query (what every committed write asks
    when it pushes): the stored mode is read in the same statement, and each mode's transports
    (``strategies.transports_of``) are matched against it, so a ``mode set`` is followed at once
    as before."""
    stored = Subquery(NodeIdentity.objects.order_by("pk").values("deployment_mode")[:1])
    fallback = _fallback_mode()
    nats = app_settings.nats_configured
    by_mode = Q()
    for mode in MODE_TRANSPORTS:
        kinds = transports_of(mode, nats=nats)
        if kinds:
            by_mode |= Q(cycle_mode=mode, transport__in=kinds)
    if not by_mode:
        return []
    return list(
        Peer.objects.annotate(cycle_mode=Coalesce(NullIf(stored, Value("")), Value(fallback)))
        .filter(by_mode, enabled=True)
        .order_by("name")
        .values_list("id", flat=True)
    )


def push_source(*, node: str) -> tuple[str, str]:
    """What a received push needs to know before it applies, in one query: the name of the peer
    whose node id is ``node`` (``node`` itself when no peer has it) and the mode this node's
    cycles run under (``selectors.mode.cycle_mode``, read now)."""
    row = (
        NodeIdentity.objects.order_by("pk")
        .values("deployment_mode")
        .annotate(
            peer_name=Subquery(
                Peer.objects.filter(node_id=node).order_by("name").values("name")[:1]
            )
        )
        .first()
    )
    if row is None:  # no identity row yet: nothing stored, and the peer read on its own
        name = Peer.objects.filter(node_id=node).order_by("name").values_list("name", flat=True)
        return (name.first() or node), _fallback_mode()
    return (row["peer_name"] or node), (row["deployment_mode"] or _fallback_mode())


def _fallback_mode() -> str:
    """``cycle_mode`` when no mode is stored."""
    return str(app_settings.DEPLOYMENT_MODE or "") or "LOCAL_EXTERNAL"


def peers_all() -> QuerySet[Peer]:
    """Every peer, enabled or not, whatever its transport, by name."""
    return Peer.objects.order_by("name")


def peers_to_sync(*, peer_name: str | None = None) -> list[Peer]:
    """Every enabled peer by name, or only ``peer_name`` (none when it is disabled).

    Raises ``UnknownPeerError`` when ``peer_name`` names no peer.
    """
    peers = peers_enabled()
    if peer_name is not None:
        if not Peer.objects.filter(name=peer_name).exists():
            raise UnknownPeerError(peer_name)
        peers = peers.filter(name=peer_name)
    return list(peers)
