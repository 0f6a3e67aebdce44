"""configsync's models, one module per concept."""

from configsync.models.conflict import Conflict
from configsync.models.node import NodeIdentity
from configsync.models.peer import Peer, PeerCheckpoint, SyncRun
from configsync.models.replication import NodeClock, ReplicatedRecord
from configsync.models.system_config import SystemConfig

__all__ = [
    "Conflict",
    "NodeClock",
    "NodeIdentity",
    "Peer",
    "PeerCheckpoint",
    "ReplicatedRecord",
    "SyncRun",
    "SystemConfig",
]
