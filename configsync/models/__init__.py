"""configsync's models, one module per concept."""

from configsync.envbridge.models import EnvBridgeBase
from configsync.models.api_key import ServiceAPIKey
from configsync.models.audit import AuditEvent
from configsync.models.lookup import LookupVersion
from configsync.models.node import NodeIdentity
from configsync.models.system_config import SystemConfig
from configsync.replication.models.conflicts import Conflict
from configsync.replication.models.history import RecordVersion
from configsync.replication.models.nonces import SyncNonce
from configsync.replication.models.peers import Peer, PeerCheckpoint, ReplicationLog, SyncRun
from configsync.replication.models.quarantine import QuarantinedChange
from configsync.replication.models.records import NodeClock, ReplicatedRecord

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
    "RecordVersion",
    "ReplicatedRecord",
    "ReplicationLog",
    "ServiceAPIKey",
    "SyncNonce",
    "SyncRun",
    "SystemConfig",
]
