"""Helpers of the parser fuzzers (``tests/fuzz``): valid inputs to mutate and the state a
refused input must leave unchanged."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction

from configsync.models import NodeClock, ReplicatedRecord, ReplicationLog
from configsync.replication.hlc import HLC, physical_now_ms
from configsync.replication.selectors.feed import record_as_change
from configsync.replication.signing import sign
from configsync.services.system_config import system_config_delete, system_config_set
from providers.services import ai_provider_set
from tests.support.replication import REMOTE, SECRET


def remote_batch(canary: str) -> list[dict[str, Any]]:
    """Valid feed items of every kind of record, stamped by ``REMOTE`` (the database is left as
    it was): settings plain, typed and sensitive (a ciphertext token), a tombstone, an AI
    provider with its key, a group with a permission, a user with its password hash (a token)
    and that group, and one item carrying a kept loser and a ``resolved`` note."""
    with transaction.atomic():
        system_config_set(key="SITE_NAME", value="fuzz")
        system_config_set(key="WORKERS", value="4", value_type="int")
        system_config_set(key="DB_PASSWORD", value=canary, is_sensitive=True)
        system_config_set(key="OLD", value="x")
        system_config_delete(key="OLD")
        ai_provider_set(name="main", kind="openai", api_key=canary, is_default=True)
        ops = Group.objects.create(name="ops")
        ops.permissions.add(Permission.objects.get_by_natural_key("change_user", "auth", "user"))
        alice = User.objects.create_user("alice", email="alice@example.invalid", password=canary)
        alice.groups.add(ops)
        rows = list(ReplicatedRecord.objects.order_by("seq"))
        items = [record_as_change(row) for row in rows]
        transaction.set_rollback(True)
    wall = physical_now_ms() - 60_000
    for offset, item in enumerate(items):
        stamp = str(HLC(wall + offset, 0, REMOTE))
        item.update(hlc=stamp, origin=REMOTE, vv={REMOTE: stamp})
        item.pop("seq", None)
    loser = str(HLC(wall - 10, 3, "node-other"))
    first = items[0]
    first["losers"] = [{"hlc": loser, "origin": "node-other", "deleted": True, "data": None}]
    first["resolved"] = [{"versions": [loser, first["hlc"]], "chosen": first["hlc"]}]
    first["vv"] = {REMOTE: first["hlc"], "node-other": loser}
    return items


def state() -> dict[str, Any]:
    """What applying a change would alter: the feed (every replication row), the clock and
    every replicated table (users and groups with their relations)."""
    clock = list(NodeClock.objects.values_list("last_wall_ms", "last_logical", "last_seq"))
    return {
        "feed": list(
            ReplicatedRecord.objects.order_by("model_label", "natural_key").values_list(
                "model_label", "natural_key", "seq", "hlc", "deleted", "data", "version_vector"
            )
        ),
        "clock": clock,
        "log": sorted(
            ReplicationLog.objects.values_list("node_id", "direction", "session", "cursor")
        ),
        "users": sorted(
            (u.username, u.password, sorted(u.groups.values_list("name", flat=True)))
            for u in User.objects.all()
        ),
        "groups": sorted(
            (g.name, sorted(g.permissions.values_list("codename", flat=True)))
            for g in Group.objects.all()
        ),
        **{name: _rows(name) for name in ("systemconfig", "aiproviderconfig")},
    }


def _rows(name: str) -> list[tuple[Any, ...]]:
    model = {
        "systemconfig": apps.get_model("configsync", "SystemConfig"),
        "aiproviderconfig": apps.get_model("providers", "AIProviderConfig"),
    }[name]
    return sorted(tuple(str(v) for v in row) for row in model.objects.values_list())


def signed_headers(
    method: str, path: str, body: bytes = b"", *, node: str = REMOTE, secret: str = SECRET
) -> dict[str, str]:
    """A peer's signature headers as Django test client ``extra`` (``HTTP_X_CONFIGSYNC_…``)."""
    headers = sign(secret=secret, method=method, path=path, body=body, node=node)
    return {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
