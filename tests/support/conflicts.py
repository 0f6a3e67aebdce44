"""A conflict on a setting, made with the services: this node's version and a peer's."""

from __future__ import annotations

from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import get_keyring
from configsync.models import Conflict, ReplicatedRecord
from configsync.replication.hlc import HLC, physical_now_ms
from configsync.replication.services.conflicts import conflict_create
from configsync.services.system_config import system_config_set

LABEL = "configsync.systemconfig"


def setting_conflict(
    key: str, *, local: str, remote: str, sensitive: bool = False, peer: str = "far-node"
) -> Conflict:
    """Store ``key`` = ``local`` here, and keep as a conflict a concurrent version from ``peer``
    holding ``remote`` (encrypted under the record's context when ``sensitive``); the local
    version won."""
    system_config_set(key=key, value=local, is_sensitive=sensitive)
    record = ReplicatedRecord.objects.get(model_label=LABEL, natural_key=key)
    theirs = dict(record.data)
    if sensitive:
        context = encryption_context_for(
            model_label=LABEL, field_name="secret_value", natural_key=key
        )
        theirs["secret_value"] = get_keyring().encrypt(remote, context=context)
    else:
        theirs["value"] = remote
    stamp = HLC(physical_now_ms() - 60_000, 0, peer)
    return conflict_create(
        model_label=LABEL,
        natural_key=key,
        source=peer,
        local_version={
            "hlc": record.hlc,
            "origin": record.origin_node,
            "deleted": False,
            "data": record.data,
        },
        remote_version={"hlc": str(stamp), "origin": peer, "deleted": False, "data": theirs},
        winner="local",
    )
