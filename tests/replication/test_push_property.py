"""Property: any JSON the push endpoint accepts is stored on this backend (SQLite in one CI pass,
PostgreSQL in the other) and reads back through every read path without a 500.

Items are drawn near the valid wire form of both replicated models, with hostile values mixed
in: NUL and lone surrogates anywhere (keys, values, JSON inside values, descriptions), wrong JSON
types, oversize text, JSON that is not JSON or is NaN, tokens bound to another record or another
field. Each is pushed through a signed request; whatever the node answers (applied, quarantined,
a 400 for the batch) must be followed by reads that all succeed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from configsync import get_system_config
from configsync.crypto.errors import DecryptionError
from configsync.crypto.keyring import get_keyring
from configsync.models import SystemConfig
from configsync.replication.hlc import HLC, physical_now_ms
from configsync.replication.signing import sign
from providers.models import AIProviderConfig
from tests.support.replication import REMOTE, SECRET

pytestmark = pytest.mark.django_db

PUSH = "/api/v1/sync/push"
HOSTILE = st.sampled_from(["\x00", "\ud800", "\udfff", "é", "\u2028", "'", '"', "\\", " "])
TEXT = st.one_of(
    st.text(max_size=20),
    st.lists(st.one_of(st.text(max_size=5), HOSTILE), max_size=6).map("".join),
)
KEYS = st.one_of(
    st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
    TEXT.filter(bool),
    st.just("K" * 256),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON_VALUE = st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
)


def _encodable(text: str) -> bool:
    """Whether a peer's keyring could have encrypted ``text`` (UTF-8: no lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json_text(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


VALUES = st.one_of(
    TEXT,
    st.integers().map(str),
    st.sampled_from(["true", "false", "maybe", "{not json", "NaN", "1e999", "", "x" * 70_000]),
    JSON_VALUE.map(_json_text),
    JSON_VALUE,  # a wrong JSON type where text belongs
)


@st.composite
def system_items(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(KEYS)
    sensitive = draw(st.booleans())
    value_type = draw(st.sampled_from(["str", "int", "float", "bool", "json", "url", "complex"]))
    value = draw(VALUES)
    secret = None
    if sensitive and isinstance(value, str) and _encodable(value + key):
        bound_to = draw(st.sampled_from([key, "ANOTHER"]))
        secret = get_keyring().encrypt(
            value, context=f"configsync.systemconfig.secret_value:{bound_to}"
        )
        value = ""
    data = {
        "key": key,
        "value_type": value_type,
        "value": value,
        "secret_value": secret,
        "is_sensitive": sensitive,
        "category": draw(TEXT),
        "description": draw(TEXT),
    }
    return _item("configsync.systemconfig", key, data, draw)


@st.composite
def provider_items(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), TEXT))
    kind = draw(st.sampled_from(["openai", "ollama", "anthropic", "azure_openai", "nope"]))
    api_key = draw(st.one_of(st.none(), TEXT.filter(bool).filter(_encodable)))
    token = None
    if api_key is not None and _encodable(name):
        bound_to = draw(st.sampled_from([name, "another"]))
        token = get_keyring().encrypt(
            api_key, context=f"providers.aiproviderconfig.api_key:{bound_to}"
        )
    data = {
        "name": name,
        "kind": kind,
        "api_key": token,
        "base_url": draw(st.one_of(st.just("http://127.0.0.1:11434"), TEXT)),
        "default_model": draw(TEXT),
        "organization": draw(st.one_of(st.just(""), TEXT)),
        "endpoint": "",
        "api_version": "",
        "deployment": "",
        "enabled": draw(st.booleans()),
        "is_default": draw(st.booleans()),
    }
    return _item("providers.aiproviderconfig", name, data, draw)


def _item(model: str, key: str, data: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    wall = physical_now_ms() + draw(st.sampled_from([0, 0, 0, 10**9]))
    logical = draw(st.sampled_from([0, 1, 99_999_999]))
    stamp = str(HLC(wall, logical, REMOTE))
    return {
        "model": model,
        "key": key,
        "hlc": stamp,
        "origin": REMOTE,
        "vv": {REMOTE: stamp},
        "deleted": draw(st.booleans()) and draw(st.booleans()),
        "data": data,
    }


def _deleted(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "data": None} if item["deleted"] else item


def push(changes: list[dict[str, Any]]) -> Any:
    raw = json.dumps({"changes": changes}).encode()  # escapes NUL and lone surrogates
    headers = sign(secret=SECRET, method="POST", path=PUSH, body=raw, node=REMOTE)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return APIClient().generic("POST", PUSH, raw, content_type="application/json", **extra)


def read_everything(admin: APIClient, django_admin: Any) -> None:
    """Every read path over every stored record; any 500 or exception fails the property."""
    for base in ("/api/v1/configs/system/", "/api/v1/configs/ai-providers/"):
        for query in ("", "?reveal=true"):
            listing = admin.get(base + query)
            assert listing.status_code == 200, listing.content[:300]
    for record in SystemConfig.objects.all():
        for query in ("", "?reveal=true"):
            detail = admin.get(f"/api/v1/configs/system/{record.key}/{query}")
            assert detail.status_code == 200, detail.content[:300]
        try:
            get_system_config(record.key)
        except DecryptionError:  # pragma: no cover - only tokens of our own key are drawn
            raise
        for args in (("get", record.key), ("get", record.key, "--json")):
            call_command("configsync", *args, stdout=io.StringIO())
    for provider in AIProviderConfig.objects.all():
        detail = admin.get(f"/api/v1/configs/ai-providers/{provider.name}/?reveal=true")
        assert detail.status_code == 200, detail.content[:300]
    call_command("configsync", "list", stdout=io.StringIO())
    call_command("configsync", "list", "--json", stdout=io.StringIO())
    call_command("configsync", "provider", "list", stdout=io.StringIO())
    for page in ("/admin/configsync/systemconfig/", "/admin/providers/aiproviderconfig/"):
        assert django_admin.get(page).status_code == 200
    raw = b""
    headers = sign(secret=SECRET, method="GET", path="/api/v1/sync/changes", body=raw, node="x-1")
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    feed = APIClient().get("/api/v1/sync/changes", **extra)
    assert feed.status_code == 200, feed.content[:300]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(st.one_of(system_items(), provider_items()), min_size=1, max_size=4))
def test_whatever_push_accepts_reads_back_everywhere(
    batch: list[dict[str, Any]], client: Any, settings: Any
) -> None:
    settings.CONFIGSYNC_NODE_ID = "node-local"
    settings.CONFIGSYNC_SYNC_SECRET = SECRET
    settings.CONFIGSYNC_PEERS = []
    user = get_user_model().objects.filter(username="prop-admin").first()
    if user is None:
        user = get_user_model().objects.create_user(
            username="prop-admin", password="unused", is_staff=True, is_superuser=True
        )
    client.force_login(user)
    admin = APIClient()
    admin.force_login(user)
    response = push([_deleted(item) for item in batch])
    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 200:
        statuses = {r["status"] for r in response.json()["results"]}
        assert statuses <= {"applied", "stale", "conflict", "quarantined"}
    read_everything(admin, client)
