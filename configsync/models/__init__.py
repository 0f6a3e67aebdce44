"""configsync's models, one module per concept."""

from configsync.models.conflict import Conflict
from configsync.models.node import NodeIdentity
from configsync.models.system_config import SystemConfig

__all__ = ["Conflict", "NodeIdentity", "SystemConfig"]
