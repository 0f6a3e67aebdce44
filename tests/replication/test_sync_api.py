"""The replication endpoints: signed peer calls (changes, push, digest), conflicts, strategies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from configsync.models import Conflict, ReplicatedRecord, SyncNonce, SystemConfig
from configsync.replication.hlc import physical_now_ms
from configsync.replication.signing import sign
from configsync.services.system_config import system_config_set
from tests.support.replication import (
    LOCAL,
    REMOTE,
    SECRET,
    remote_change,
    stamp,
    use_replication_settings,
)

pytestmark = pytest.mark.django_db

PUSH = "/api/v1/sync/push"
CHANGES = "/api/v1/sync/changes"


@pytest.fixture(autouse=True)
def _sync_settings(settings: Any) -> None:
    use_replication_settings(settings)


def signed(
    method: str,
    path: str,
    body: Any = None,
    *,
    secret: str = SECRET,
    node: str = REMOTE,
    headers: dict[str, str] | None = None,
) -> Any:
    raw = b"" if body is None else json.dumps(body).encode()
    sig = headers or sign(secret=secret, method=method, path=path, body=raw, node=node)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sig.items()}
    client = APIClient()
    if method == "GET":
        return client.get(path, **extra)
    return client.generic(method, path, raw, content_type="application/json", **extra)


def test_push_applies_and_answers_per_item() -> None:
    batch = [remote_change("A", "1"), remote_change("B", "2")]
    response = signed("POST", PUSH, {"changes": batch})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["node"] == LOCAL
    assert [r["status"] for r in body["results"]] == ["applied", "applied"]
    again = signed("POST", PUSH, {"changes": batch})
    assert [r["status"] for r in again.json()["results"]] == ["stale", "stale"]
    assert ReplicatedRecord.objects.get(natural_key="A").received_from == REMOTE


def test_a_malformed_item_is_answered_quarantined_and_the_rest_applies() -> None:
    bad = remote_change("B")
    bad["data"]["value_type"] = 42
    response = signed("POST", PUSH, {"changes": [remote_change("A"), bad]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["applied", "quarantined"]
    assert "value_type" in results[1]["reason"] and "reason" not in results[0]
    assert list(SystemConfig.objects.values_list("key", flat=True)) == ["A"]


@pytest.mark.parametrize("payload", [{"changes": "nope"}, {"nothing": []}, [1, 2]])
def test_wrong_shapes_get_400(payload: Any) -> None:
    assert signed("POST", PUSH, payload).status_code == 400
    assert not ReplicatedRecord.objects.exists()


def test_oversize_batch_gets_400_and_future_timestamps_are_held(settings: Any) -> None:
    settings.CONFIGSYNC_MAX_PUSH_BATCH = 2
    big = [remote_change(f"K{i}") for i in range(3)]
    assert signed("POST", PUSH, {"changes": big}).status_code == 400
    future = remote_change("F", hlc=stamp(REMOTE, wall=physical_now_ms() + 3_600_000))
    response = signed("POST", PUSH, {"changes": [future]})
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["status"] == "quarantined" and result["reason"].startswith("clock skew")
    assert not ReplicatedRecord.objects.exists()


def test_changes_pages_with_cursor_and_refuses_bad_cursors() -> None:
    for key in "ABC":
        system_config_set(key=key, value="1")
    first = signed("GET", f"{CHANGES}?since=&limit=2")
    assert first.status_code == 200
    page = first.json()
    assert [c["key"] for c in page["changes"]] == ["A", "B"] and page["has_more"]
    second = signed("GET", f"{CHANGES}?since={page['next_cursor']}&limit=2").json()
    assert [c["key"] for c in second["changes"]] == ["C"] and not second["has_more"]
    assert signed("GET", f"{CHANGES}?since=garbage").status_code == 400
    assert signed("GET", f"{CHANGES}?limit=abc").status_code == 400
    assert signed("GET", f"{CHANGES}?limit=0").status_code == 400


def test_digest_lists_versions_without_values(canary: str) -> None:
    system_config_set(key="S", value=canary, is_sensitive=True)
    response = signed("GET", "/api/v1/sync/digest?since=")
    assert response.status_code == 200
    assert response.json()["changes"][0].keys() == {"model", "key", "hlc", "deleted"}
    assert canary not in response.content.decode()


# --- signatures ---------------------------------------------------------------------------


def _tamper(headers: dict[str, str], **changes: str) -> dict[str, str]:
    return {**headers, **changes}


def test_unsigned_requests_get_401_and_change_nothing() -> None:
    client = APIClient()
    assert client.get(CHANGES).status_code == 401
    response = client.post(PUSH, {"changes": [remote_change("A")]}, format="json")
    assert response.status_code == 401
    assert not ReplicatedRecord.objects.exists()


def test_forged_signature_gets_403_and_changes_nothing() -> None:
    body = {"changes": [remote_change("A")]}
    assert signed("POST", PUSH, body, secret="wrong-secret").status_code == 403
    raw = json.dumps(body).encode()
    good = sign(secret=SECRET, method="POST", path=PUSH, body=raw, node=REMOTE)
    other_body = {"changes": [remote_change("EVIL")]}
    assert signed("POST", PUSH, other_body, headers=good).status_code == 403  # body swapped
    renamed = _tamper(good, **{"X-Configsync-Node": "node-evil"})
    assert signed("POST", PUSH, body, headers=renamed).status_code == 403
    assert not ReplicatedRecord.objects.exists()


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("X-Configsync-Signature", "\u00e9" * 64, 403),  # not ASCII: a bad signature, not a 500
        ("X-Configsync-Timestamp", "\u00b2", 401),  # a digit to str.isdigit(), not to int()
        ("X-Configsync-Timestamp", "9" * 5000, 401),  # beyond int()'s digit limit
        ("X-Configsync-Node", "node evil", 401),  # not a node id
    ],
)
def test_malformed_signature_headers_are_refused_not_crashed_on(
    header: str, value: str, code: int
) -> None:
    body = {"changes": [remote_change("A")]}
    good = sign(
        secret=SECRET, method="POST", path=PUSH, body=json.dumps(body).encode(), node=REMOTE
    )
    response = signed("POST", PUSH, body, headers=_tamper(good, **{header: value}))
    assert response.status_code == code
    assert not ReplicatedRecord.objects.exists() and not SyncNonce.objects.exists()


def test_stale_signature_gets_401(settings: Any) -> None:
    settings.CONFIGSYNC_SIGNATURE_MAX_AGE_SECONDS = 300
    # The node's clock (CONFIGSYNC_CLOCK_OFFSET_MS, the injectable clock) signs 301 s ago.
    settings.CONFIGSYNC_CLOCK_OFFSET_MS = -301_000
    body = {"changes": [remote_change("A")]}
    old = sign(secret=SECRET, method="POST", path=PUSH, body=json.dumps(body).encode(), node=REMOTE)
    settings.CONFIGSYNC_CLOCK_OFFSET_MS = 0
    assert signed("POST", PUSH, body, headers=old).status_code == 401
    assert not ReplicatedRecord.objects.exists()


def test_signatures_read_the_nodes_clock_not_the_systems(settings: Any) -> None:
    """Sender and receiver both 10 minutes ahead (one skewed pair): within the window of each
    other, whatever the system clock says."""
    settings.CONFIGSYNC_SIGNATURE_MAX_AGE_SECONDS = 300
    settings.CONFIGSYNC_CLOCK_OFFSET_MS = 600_000
    body = {"changes": [remote_change("A")]}
    ahead = sign(
        secret=SECRET, method="POST", path=PUSH, body=json.dumps(body).encode(), node=REMOTE
    )
    assert signed("POST", PUSH, body, headers=ahead).status_code == 200


def test_replayed_request_gets_401_and_applies_nothing_more() -> None:
    body = {"changes": [remote_change("A", "1")]}
    raw = json.dumps(body).encode()
    headers = sign(secret=SECRET, method="POST", path=PUSH, body=raw, node=REMOTE)
    assert signed("POST", PUSH, body, headers=headers).status_code == 200
    seq = ReplicatedRecord.objects.get().seq
    assert signed("POST", PUSH, body, headers=headers).status_code == 401
    assert ReplicatedRecord.objects.get().seq == seq
    assert SyncNonce.objects.count() == 1


def test_without_a_configured_secret_peers_are_refused(settings: Any) -> None:
    settings.CONFIGSYNC_SYNC_SECRET = ""
    response = signed("POST", PUSH, {"changes": [remote_change("A")]})
    assert response.status_code == 401
    assert not ReplicatedRecord.objects.exists()


def test_an_admin_session_cannot_push(client_for: Callable[[str], APIClient]) -> None:
    response = client_for("admin").post(PUSH, {"changes": [remote_change("A")]}, format="json")
    assert response.status_code in (401, 403)
    # Only the admin user itself is in the feed (users replicate), none of the pushed changes.
    assert not ReplicatedRecord.objects.exclude(model_label="auth.user").exists()


# --- conflicts and strategies -------------------------------------------------------------


def _make_conflict() -> Conflict:
    system_config_set(key="K", value="local")
    later = stamp(REMOTE, wall=physical_now_ms() + 1000)
    assert (
        signed("POST", PUSH, {"changes": [remote_change("K", "remote", hlc=later)]}).json()[
            "results"
        ][0]["status"]
        == "conflict"
    )
    return Conflict.objects.get()


def test_conflicts_list_never_shows_values(
    client_for: Callable[[str], APIClient], canary: str
) -> None:
    system_config_set(key="K", value=canary, is_sensitive=True)
    later = stamp(REMOTE, wall=physical_now_ms() + 1000)
    signed("POST", PUSH, {"changes": [remote_change("K", "remote", hlc=later)]})
    response = client_for("admin").get("/api/v1/sync/conflicts/")
    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 1 and rows[0]["key"] == "K" and rows[0]["status"] == "open"
    assert "secret_value" in rows[0]["changed_fields"]
    text = response.content.decode()
    assert canary not in text and "enc1:" not in text
    assert client_for("anonymous").get("/api/v1/sync/conflicts/").status_code in (401, 403)


def test_resolve_writes_the_chosen_version_as_a_new_change(
    client_for: Callable[[str], APIClient],
) -> None:
    conflict = _make_conflict()
    admin = client_for("admin")
    assert SystemConfig.objects.get(key="K").value == "remote"
    before = ReplicatedRecord.objects.get(natural_key="K")
    url = f"/api/v1/sync/conflicts/{conflict.pk}/resolve"
    assert client_for("read").post(url, {"choice": "local"}, format="json").status_code == 403
    assert admin.post(url, {"choice": "maybe"}, format="json").status_code == 400
    response = admin.post(url, {"choice": "local"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "resolved"
    after = ReplicatedRecord.objects.get(natural_key="K")
    assert SystemConfig.objects.get(key="K").value == "local"
    assert after.origin_node == LOCAL and after.hlc > before.hlc and after.seq > before.seq
    again = admin.post(url, {"choice": "remote"}, format="json")
    assert again.status_code == 409
    assert SystemConfig.objects.get(key="K").value == "local"
    missing = admin.post(
        "/api/v1/sync/conflicts/999999/resolve", {"choice": "local"}, format="json"
    )
    assert missing.status_code == 404


def test_strategies_follow_the_deployment_mode(
    client_for: Callable[[str], APIClient], settings: Any
) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = ""
    admin = client_for("admin")
    body = admin.get("/api/v1/sync/strategies").json()
    assert body["mode"] == "LOCAL_ONLY" and body["source"] == "derived"
    assert body["strategies"]["system_config"]["sync_enabled"] is False
    settings.CONFIGSYNC_PEERS = ["b=http://127.0.0.1:9"]
    settings.CONFIGSYNC_SYNC_INTERVAL_SECONDS = 30
    body = admin.get("/api/v1/sync/strategies").json()
    assert body["mode"] == "LOCAL_EXTERNAL"
    for name in ("system_config", "ai_providers"):
        assert body["strategies"][name]["strategy"] == "full_duplex"
        assert body["strategies"][name]["sync_enabled"] is True
        assert body["strategies"][name]["interval_seconds"] == 30


def test_a_caller_using_our_own_node_id_is_refused() -> None:
    response = signed("POST", PUSH, {"changes": [remote_change("A")]}, node=LOCAL)
    assert response.status_code == 403 and "node id" in response.json()["detail"]
    assert signed("GET", CHANGES, node=LOCAL).status_code == 403
    assert not ReplicatedRecord.objects.exists()


def test_a_push_of_a_type_this_node_does_not_take_is_answered_stale_not_applied(
    settings: Any,
) -> None:
    from tests.testapp.models import Template

    settings.CONFIGSYNC_DEPLOYMENT_MODE = "LOCAL_EXTERNAL"
    settings.CONFIGSYNC_SYNC_STRATEGIES = {"templates": {"sync_enabled": False}}
    batch = [
        remote_change("t1", model="testapp.template", data={"slug": "t1", "body": "x"}),
        remote_change("A", "1"),
    ]
    response = signed("POST", PUSH, {"changes": batch})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["index"], r["status"]) for r in results] == [(0, "stale"), (1, "applied")]
    assert not Template.objects.exists() and SystemConfig.objects.get(key="A").value == "1"
    settings.CONFIGSYNC_SYNC_STRATEGIES = {}
    again = signed("POST", PUSH, {"changes": batch[:1]}).json()["results"]
    assert again[0]["status"] == "applied" and Template.objects.get(slug="t1").body == "x"
