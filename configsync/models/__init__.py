"""configsync's models, one module per concept."""

from configsync.models.api_key import ServiceAPIKey
from configsync.models.audit import AuditEvent
from configsync.models.conflict import Conflict
from configsync.models.env_bridge import EnvBridgeBase
from configsync.models.lookup import LookupVersion
from configsync.models.node import NodeIdentity
from configsync.models.peer import Peer, PeerCheckpoint, ReplicationLog, SyncRun
from configsync.models.quarantine import QuarantinedChange
from configsync.models.replication import NodeClock, ReplicatedRecord
from configsync.models.sync_nonce import SyncNonce
from configsync.models.system_config import SystemConfig

__all__ = [
    "AuditEvent",
    "Conflict",
    "EnvBridgeBase",
    "LookupVersion",
    "NodeClock",
    "NodeIdentity",
    "Peer",
    "PeerCheckpoint",
    "QuarantinedChange",
    "ReplicatedRecord",
    "ReplicationLog",
    "ServiceAPIKey",
    "SyncNonce",
    "SyncRun",
    "SystemConfig",
]
