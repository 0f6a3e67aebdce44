"""Replication test helpers: a fixed local node id, a sync secret, stamps and remote changes.

The replication tests' conftest makes every test there node ``LOCAL``
(``use_replication_settings``); tests elsewhere that talk to the sync endpoints call it themselves.
"""

from __future__ import annotations

from typing import Any

from configsync.replication.hlc import HLC, physical_now_ms

LOCAL = "node-local"
REMOTE = "node-remote"
OTHER = "node-other"
SECRET = "test-sync-secret-not-real"


def use_replication_settings(settings: Any) -> None:
    """This process is node ``LOCAL`` of a group signing with ``SECRET``, with no peers set."""
    settings.CONFIGSYNC_NODE_ID = LOCAL
    settings.CONFIGSYNC_SYNC_SECRET = SECRET
    settings.CONFIGSYNC_PEERS = []


def stamp(node: str = REMOTE, *, wall: int | None = None, logical: int = 0) -> str:
    return str(HLC(physical_now_ms() if wall is None else wall, logical, node))


def config_data(key: str, value: str = "v", **extra: Any) -> dict[str, Any]:
    data = {
        "key": key,
        "value_type": "str",
        "value": value,
        "secret_value": None,
        "is_sensitive": False,
        "category": "general",
        "description": "",
    }
    data.update(extra)
    return data


def provider_data(name: str, **extra: Any) -> dict[str, Any]:
    """The wire form of an AI provider (``api_key`` as a ciphertext token, or ``None``)."""
    data = {
        "name": name,
        "kind": "openai",
        "api_key": None,
        "base_url": "",
        "default_model": "gpt-4o-mini",
        "organization": "",
        "endpoint": "",
        "api_version": "",
        "deployment": "",
        "enabled": True,
        "is_default": False,
    }
    data.update(extra)
    return data


def remote_change(
    key: str,
    value: str = "v",
    *,
    node: str = REMOTE,
    hlc: str | None = None,
    vv: dict[str, str] | None = None,
    deleted: bool = False,
    data: dict[str, Any] | None = None,
    model: str = "configsync.systemconfig",
    losers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A feed item as another node would send it."""
    hlc = hlc or stamp(node)
    item: dict[str, Any] = {
        "model": model,
        "key": key,
        "hlc": hlc,
        "origin": node,
        "vv": vv or {node: hlc},
        "deleted": deleted,
        "data": None if deleted else (data if data is not None else config_data(key, value)),
    }
    if losers is not None:
        item["losers"] = losers
    return item
