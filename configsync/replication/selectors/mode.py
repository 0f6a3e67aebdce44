"""This node's deployment mode and the effective strategy matrix (reads only).

The mode is ``NodeIdentity.deployment_mode`` when set (``configsync mode set``, the admin: this
node's choice, stored in its database and replicated to nothing), else
``CONFIGSYNC_DEPLOYMENT_MODE``, else derived: ``LOCAL_EXTERNAL`` with peers, ``LOCAL_ONLY``
without. It is read from the database on every call, so web, workers and beat follow a switch at
their next request or cycle, without a restart.
"""

from __future__ import annotations

from configsync.conf import app_settings
from configsync.models import NodeIdentity, Peer
from configsync.replication import registry, strategies
from configsync.replication.strategies import StrategyRow


def deployment_mode_stored() -> str:
    """The mode set at run time on this node; ``""`` when none is (the settings decide)."""
    stored = NodeIdentity.objects.order_by("pk").values_list("deployment_mode", flat=True).first()
    return stored or ""


def deployment_mode_source() -> str:
    """Where the mode comes from: ``stored``, ``settings`` or ``derived``."""
    if deployment_mode_stored():
        return "stored"
    return "settings" if app_settings.DEPLOYMENT_MODE else "derived"


def deployment_mode() -> str:
    """The stored mode, else ``CONFIGSYNC_DEPLOYMENT_MODE``, else ``LOCAL_EXTERNAL`` with peers
    and ``LOCAL_ONLY`` without."""
    stored = deployment_mode_stored()
    if stored:
        return stored
    configured = str(app_settings.DEPLOYMENT_MODE or "")
    if configured:
        return configured
    has_peers = bool(app_settings.PEERS) or Peer.objects.filter(enabled=True).exists()
    return "LOCAL_EXTERNAL" if has_peers else "LOCAL_ONLY"


def cycle_mode() -> str:
    """The mode a cycle with a peer runs under: the stored or configured mode; when neither is
    set, ``LOCAL_EXTERNAL`` (the derived ``LOCAL_ONLY`` means "no peer", and a cycle has one)."""
    stored = deployment_mode_stored()
    return stored or str(app_settings.DEPLOYMENT_MODE or "") or "LOCAL_EXTERNAL"


def strategy_matrix(*, mode: str | None = None) -> dict[str, StrategyRow]:
    """Every registered data type's effective row under ``mode`` (default: this node's)."""
    return strategies.matrix(
        mode=mode or deployment_mode(),
        data_types=registry.data_types(),
        interval=app_settings.sync_interval_seconds,
        overrides=app_settings.SYNC_STRATEGIES,
    )


def transport_problems(mode: str, *, peers_in_database: bool = True) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` about the transports ``mode`` needs, from the settings (and, with
    ``peers_in_database``, the HTTP peers added in the admin)."""
    http_peers = bool(app_settings.PEERS)
    if peers_in_database and not http_peers:
        http_peers = Peer.objects.filter(enabled=True, transport=Peer.TransportKind.HTTP).exists()
    return strategies.transport_problems(
        mode,
        bucket={
            name: bool(getattr(app_settings, name.removeprefix("CONFIGSYNC_")))
            for name in strategies.R2_SETTINGS
        },
        external_database=bool(app_settings.external_database_url),
        http_peers=http_peers,
        nats=app_settings.nats_configured,
    )


def mode_problems(*, mode: str | None = None) -> list[str]:
    """What ``status`` says about the transports the mode needs (errors first, then warnings)."""
    errors, warnings = transport_problems(mode or deployment_mode())
    return [*errors, *warnings]


def mode_transports(*, mode: str | None = None) -> tuple[str, ...]:
    """The ``Peer.transport`` kinds a cycle uses under ``mode`` (default: this node's cycle mode,
    read now); ``nats`` joins every mode but ``LOCAL_ONLY`` when ``CONFIGSYNC_NATS_URL`` is set."""
    return strategies.transports_of(mode or cycle_mode(), nats=app_settings.nats_configured)
