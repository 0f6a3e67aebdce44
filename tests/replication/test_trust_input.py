"""Issue 8, "one bad change halts the group": a replicated change passes exactly a local write's
validation; what this node cannot store is quarantined while the rest applies; every HLC field
is bounded and the clock never refuses a local write; skew-affected conflicts are marked."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from configsync import get_system_config
from configsync.crypto.keyring import generate_key, get_keyring, reset_keyring
from configsync.models import Conflict, NodeClock, QuarantinedChange, ReplicatedRecord, SystemConfig
from configsync.replication import hooks
from configsync.replication.hlc import HLC, MAX_LOGICAL, physical_now_ms, receive, tick
from configsync.replication.selectors.feed import feed_page
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.quarantine import quarantine_drop, quarantine_retry
from configsync.replication.signing import canonical
from configsync.services.node import node_id
from configsync.services.system_config import system_config_set
from tests.support.replication import (
    LOCAL,
    REMOTE,
    SECRET,
    config_data,
    provider_data,
    remote_change,
    stamp,
)

pytestmark = pytest.mark.django_db


def apply(changes: list[Any], **kwargs: Any) -> list[Any]:
    return changes_apply(changes=changes, source_node=REMOTE, source_name="peer", **kwargs)


def statuses(changes: list[Any], **kwargs: Any) -> list[str]:
    return [r.status for r in apply(changes, **kwargs)]


def token_for(plaintext: str, key: str, field: str = "configsync.systemconfig.secret_value") -> str:
    return get_keyring().encrypt(plaintext, context=f"{field}:{key}")


# --- one validator: a replicated change passes exactly a local write's rules -----------------

BAD_DATA = [
    pytest.param({"value_type": "int", "value": "abc"}, "value", id="int-abc"),
    pytest.param({"value_type": "json", "value": "{not json"}, "value", id="json-garbage"),
    pytest.param({"value_type": "bool", "value": "maybe"}, "value", id="bool-maybe"),
    pytest.param({"value_type": "float", "value": "NaN"}, "value", id="float-nan"),
    pytest.param({"value_type": "json", "value": "[NaN]"}, "value", id="json-nan"),
    pytest.param({"value_type": "json", "value": "[" * 100 + "]" * 100}, "value", id="json-deep"),
    pytest.param({"value_type": "json", "value": '"a\\u0000b"'}, "value", id="json-escaped-nul"),
    pytest.param({"value_type": "json", "value": '["\\ud800"]'}, "value", id="json-surrogate"),
    pytest.param({"value_type": "bool", "value": "yes"}, "value", id="bool-not-canonical"),
    pytest.param({"value_type": "int", "value": ""}, "value", id="int-empty"),
    pytest.param({"value": ["a", "list"]}, "value", id="list-for-scalar"),
    pytest.param({"value": 42}, "value", id="number-for-text"),
    pytest.param({"is_sensitive": "yes"}, "is_sensitive", id="string-for-flag"),
    pytest.param({"value": "x" * (70 * 1024)}, "value", id="70KB"),
    pytest.param({"value": "a\x00b"}, "value", id="nul"),
    pytest.param({"value": "a\ud800b"}, "value", id="lone-surrogate"),
    pytest.param({"description": "d\x00"}, "description", id="nul-in-description"),
    pytest.param({"category": "c" * 65}, "category", id="category-too-long"),
    pytest.param({"is_sensitive": True, "value": "plain"}, "value", id="sensitive-with-plain"),
    pytest.param({"secret_value": "enc1:abc:def"}, "secret_value", id="plain-with-token"),
]


@pytest.mark.parametrize(("data", "field"), BAD_DATA)
def test_a_change_a_local_write_would_refuse_is_quarantined(
    data: dict[str, Any], field: str
) -> None:
    bad = remote_change("BAD", data=config_data("BAD", **data))
    results = apply([remote_change("GOOD", "1"), bad])
    assert [r.status for r in results] == ["applied", "quarantined"]
    assert field in results[1].reason
    assert list(SystemConfig.objects.values_list("key", flat=True)) == ["GOOD"]
    assert not ReplicatedRecord.objects.filter(natural_key="BAD").exists()
    # Nothing that could break a reader was stored: every read path still works.
    assert get_system_config("GOOD") == "1"
    assert [c["key"] for c in feed_page(node=node_id(), cursor="", limit=10).changes] == ["GOOD"]


_WIRE_ONLY = {"list-for-scalar", "number-for-text", "string-for-flag"}  # JSON types of the wire


@pytest.mark.parametrize(("data", "field"), [p for p in BAD_DATA if p.id not in _WIRE_ONLY])
def test_the_same_values_are_refused_by_a_local_write(data: dict[str, Any], field: str) -> None:
    """Both paths run the model's validation: ``system_config_set`` refuses what replication
    quarantines (here through the model's ``full_clean`` with the same wire values)."""
    record = SystemConfig(**{**config_data("LOCAL_KEY"), **data})
    with pytest.raises(ValidationError):
        record.full_clean(exclude=["secret_value"], validate_unique=False)


def test_a_local_write_refuses_unstorable_characters_and_oversize_values() -> None:
    for value in ("a\x00b", "a\ud800b", "x" * (70 * 1024)):
        with pytest.raises(ValidationError):
            system_config_set(key="K", value=value)
    with pytest.raises(ValidationError):
        system_config_set(key="K", value="ok", description="d\x00")
    with pytest.raises(ValidationError):
        system_config_set(key="J", value={"a": "\x00"}, value_type="json")
    assert not SystemConfig.objects.exists()


def test_a_key_with_a_trailing_newline_is_refused_on_every_path() -> None:
    """The key patterns end in ``$``, which also matches before a final newline: ``"K\\n"`` would
    pass, making a record no REST path or .env name can address (REST trims it to ``K``)."""
    from providers.services import ai_provider_set

    with pytest.raises(ValidationError):
        system_config_set(key="K\n", value="x")
    with pytest.raises(ValidationError):
        ai_provider_set(name="p\n", kind="ollama", base_url="http://h:1")
    config = remote_change("K\n")
    provider = remote_change(
        "p\n",
        model="providers.aiproviderconfig",
        data=provider_data("p\n", kind="ollama", base_url="http://h:1", default_model="m"),
    )
    tombstone = remote_change("J\n", deleted=True)
    assert statuses([config, provider, tombstone]) == ["quarantined"] * 3
    assert not ReplicatedRecord.objects.exists()


def test_a_token_copied_from_another_record_is_quarantined(canary: str) -> None:
    stolen = token_for(canary, "OTHER")
    bad = remote_change("S", data=config_data("S", "", secret_value=stolen, is_sensitive=True))
    (result,) = apply([bad])
    assert result.status == "quarantined" and "does not belong to this record" in result.reason
    assert canary not in result.reason and stolen not in result.reason
    assert not SystemConfig.objects.exists()
    good = token_for(canary, "S")
    ok = remote_change("S", data=config_data("S", "", secret_value=good, is_sensitive=True))
    assert statuses([ok]) == ["applied"]
    assert SystemConfig.objects.get(key="S").secret_value == canary


def test_a_sensitive_value_is_checked_against_its_type_after_decryption() -> None:
    token = token_for("not-a-number", "S")
    bad = remote_change(
        "S",
        data=config_data("S", "", value_type="int", secret_value=token, is_sensitive=True),
    )
    (result,) = apply([bad])
    assert result.status == "quarantined" and "secret_value" in result.reason
    assert "not-a-number" not in result.reason


def test_a_token_of_a_key_this_node_lacks_is_stored_unverified(settings: Any, canary: str) -> None:
    other = generate_key()
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [other]
    reset_keyring()
    token = token_for(canary, "ANYWHERE")  # bound to another record, but unverifiable here
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [generate_key()]
    reset_keyring()
    change = remote_change("S", data=config_data("S", "", secret_value=token, is_sensitive=True))
    (result,) = apply([change])
    assert result.status == "applied" and result.unreadable


def test_provider_kind_rules_apply_to_replicated_providers(canary: str) -> None:
    no_key = provider_data("p1")  # openai requires an API key
    unknown = provider_data("p2", kind="skynet")
    stray = provider_data("p3", kind="ollama", base_url="http://h:1", organization="org")
    bad_url = provider_data("p4", kind="ollama", base_url="javascript:alert(1)")
    stolen = provider_data(
        "p5", api_key=token_for(canary, "other", "providers.aiproviderconfig.api_key")
    )
    items = [
        remote_change(d["name"], model="providers.aiproviderconfig", data=d)
        for d in (no_key, unknown, stray, bad_url, stolen)
    ]
    results = apply(items)
    assert [r.status for r in results] == ["quarantined"] * 5
    assert "api_key" in results[0].reason and "kind" in results[1].reason
    assert "organization" in results[2].reason and "base_url" in results[3].reason
    assert "does not belong" in results[4].reason


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda c: c.update(key="a\x00b"), id="nul-in-key"),
        pytest.param(lambda c: c.update(key="k" * 256), id="key-too-long"),
        pytest.param(lambda c: c.update(key="bad key"), id="key-format"),
        pytest.param(lambda c: c.update(origin="x" * 65), id="origin-not-a-node-id"),
        pytest.param(lambda c: c.update(origin="node-other"), id="origin-not-the-stamp-node"),
        pytest.param(lambda c: c["vv"].update({"a\x00": c["hlc"]}), id="vv-node-not-an-id"),
        pytest.param(lambda c: c["vv"].update({"node-x": c["hlc"]}), id="vv-foreign-stamp"),
        pytest.param(lambda c: c.update(vv={"node-x": stamp("node-x")}), id="vv-misses-version"),
        pytest.param(lambda c: c.update(model="Configsync.SystemConfig\x00"), id="model-label"),
        pytest.param(lambda c: c["vv"].update({REMOTE: c["hlc"] + "\n"}), id="vv-stamp-newline"),
        pytest.param(lambda c: c.update(hlc=c["hlc"] + "\n"), id="hlc-newline"),
        pytest.param(lambda c: c.update(losers=["not an object"]), id="loser-shape"),
    ],
)
def test_untrusted_item_fields_are_checked(mutate: Any) -> None:
    bad = remote_change("BAD")
    mutate(bad)
    (result,) = apply([bad])
    assert result.status == "quarantined"
    assert not ReplicatedRecord.objects.exists()
    kept = QuarantinedChange.objects.get()
    json.dumps(result.as_dict(), ensure_ascii=False).encode()  # renderable: no lone surrogate
    assert "\x00" not in kept.natural_key + kept.model_label + kept.reason


def test_a_tombstone_key_is_validated_too() -> None:
    (result,) = apply([remote_change("a\x00b", deleted=True)])
    assert result.status == "quarantined"
    assert not ReplicatedRecord.objects.exists()


# --- quarantine: per item, idempotent, retried --------------------------------------------------


def test_quarantine_is_idempotent_and_reports_the_reason_never_the_value(canary: str) -> None:
    bad = remote_change("BAD", data=config_data("BAD", value=canary, value_type="int"))
    apply([bad])
    apply([bad])
    kept = QuarantinedChange.objects.get()
    assert kept.attempts == 2 and kept.status == "open"
    assert canary not in kept.reason and "value" in kept.reason
    assert kept.model_label == "configsync.systemconfig" and kept.natural_key == "BAD"


def test_a_held_future_timestamp_applies_once_within_the_bound(settings: Any) -> None:
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 300
    future = remote_change("F", "later", hlc=stamp(REMOTE, wall=physical_now_ms() + 400_000))
    assert statuses([future, remote_change("NOW")]) == ["quarantined", "applied"]
    assert quarantine_retry()[0].status == "quarantined"  # still beyond the bound
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 600  # as time passes, the item comes in bound
    (outcome,) = quarantine_retry()
    assert outcome.status == "applied"
    assert SystemConfig.objects.get(key="F").value == "later"
    assert QuarantinedChange.objects.get().status == "applied"
    assert quarantine_retry() == []  # nothing open


def test_a_held_item_that_wins_a_conflict_on_retry_is_marked_skew_affected(
    settings: Any,
) -> None:
    # A node ran 400 s ahead: its write is held here. Meanwhile a later real-time write is made
    # here; when the held write comes within the bound it wins by its timestamp, and the loser
    # is kept as a conflict the skew (its lead when it arrived) may have decided.
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 300
    ahead = remote_change("F", "from-ahead", hlc=stamp(REMOTE, wall=physical_now_ms() + 400_000))
    assert statuses([ahead]) == ["quarantined"]
    system_config_set(key="F", value="later-in-real-time")
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 600
    (outcome,) = quarantine_retry()
    assert outcome.status == "conflict"
    assert SystemConfig.objects.get(key="F").value == "from-ahead"
    assert Conflict.objects.get(natural_key="F").skew_affected


def test_an_operator_drops_and_retries() -> None:
    apply([remote_change("BAD", data=config_data("BAD", value="x", value_type="int"))])
    row = QuarantinedChange.objects.get()
    quarantine_drop(quarantine_id=row.pk)
    assert quarantine_retry() == []  # dropped ones are not retried automatically
    (outcome,) = quarantine_retry(quarantine_id=row.pk)
    assert outcome.status == "quarantined"
    assert QuarantinedChange.objects.get().status == "open"


@pytest.mark.parametrize("hlc_field", ["version", "vv", "loser", "resolved"])
def test_every_hlc_field_is_bounded(settings: Any, hlc_field: str) -> None:
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 300
    far = stamp(REMOTE, wall=physical_now_ms() + 10**12)
    item = remote_change("K")
    if hlc_field == "version":
        item = remote_change("K", hlc=far)
    elif hlc_field == "vv":
        item["vv"]["node-other"] = stamp("node-other", wall=physical_now_ms() + 10**12)
    elif hlc_field == "loser":
        item["losers"] = [{"hlc": far, "origin": REMOTE, "deleted": True, "data": None}]
    else:
        item["resolved"] = [{"versions": [far, item["hlc"]], "chosen": far}]
    (result,) = apply([item])
    assert result.status == "quarantined" and result.reason.startswith("clock skew")
    clock = NodeClock.objects.filter(pk=1).first()
    assert clock is None or clock.last_wall_ms < physical_now_ms() + 1000
    assert system_config_set(key="LOCAL_WRITE", value="still works")


def test_a_huge_logical_counter_never_stops_local_writes() -> None:
    now = physical_now_ms()
    edge = str(HLC(now + 60_000, MAX_LOGICAL, REMOTE))
    assert statuses([remote_change("K", hlc=edge)]) == ["applied"]
    for n in range(3):
        system_config_set(key=f"L{n}", value="x")  # no OverflowError
    stamps = sorted(ReplicatedRecord.objects.values_list("hlc", flat=True))
    assert stamps[-1] > edge and len(set(stamps)) == 4


def test_the_clock_advances_the_wall_instead_of_overflowing() -> None:
    assert tick(1000, MAX_LOGICAL, now_ms=999) == (1001, 0)
    assert receive(1000, 5, HLC(1000, MAX_LOGICAL, REMOTE), now_ms=10) == (1001, 0)
    assert receive(0, 0, HLC(1000, MAX_LOGICAL, REMOTE), now_ms=10) == (1001, 0)
    assert receive(1000, MAX_LOGICAL, HLC(5, 0, REMOTE), now_ms=10) == (1001, 0)


def test_an_unforeseen_database_failure_quarantines_only_its_item(monkeypatch: Any) -> None:
    """The database refuses one item that passed validation (here a row inserted behind the
    engine's back makes its insert violate the unique key): the rest of the page applies."""

    def collide(instance: Any) -> None:
        if instance.key == "COLLIDES":
            SystemConfig.objects.bulk_create([SystemConfig(key="COLLIDES", value="raw")])

    monkeypatch.setitem(hooks._hooks, "configsync.systemconfig", collide)
    results = apply([remote_change("A"), remote_change("COLLIDES"), remote_change("B")])
    assert [r.status for r in results] == ["applied", "quarantined", "applied"]
    assert "could not store it (IntegrityError)" in results[1].reason
    assert sorted(ReplicatedRecord.objects.values_list("natural_key", flat=True)) == ["A", "B"]


# --- skew-affected conflicts --------------------------------------------------------------------


def _conflicting_pair() -> dict[str, Any]:
    system_config_set(key="K", value="local")
    local_hlc = HLC.parse(ReplicatedRecord.objects.get(natural_key="K").hlc)
    remote_hlc = str(HLC(local_hlc.wall_ms + 500, 0, REMOTE))
    return remote_change("K", "remote", hlc=remote_hlc)


@pytest.mark.parametrize(
    ("skew_ms", "marked"),
    [(240_000, True), (-240_000, True), (1_000, False), (None, False)],
)
def test_a_conflict_decided_under_skew_is_marked(skew_ms: int | None, marked: bool) -> None:
    assert statuses([_conflicting_pair()], source_skew_ms=skew_ms) == ["conflict"]
    assert Conflict.objects.get().skew_affected is marked


def test_versions_further_apart_than_the_skew_are_not_marked() -> None:
    system_config_set(key="K", value="local")
    local_hlc = HLC.parse(ReplicatedRecord.objects.get(natural_key="K").hlc)
    change = remote_change("K", "r", hlc=str(HLC(local_hlc.wall_ms - 200_000, 0, REMOTE)))
    assert statuses([change], source_skew_ms=5_000) == ["conflict"]
    assert Conflict.objects.get().skew_affected is False


def test_the_push_endpoint_measures_the_pushers_skew() -> None:
    change = _conflicting_pair()
    body = json.dumps({"changes": [change]}).encode()
    path = "/api/v1/sync/push"
    timestamp = str(physical_now_ms() // 1000 + 120)  # the pusher's clock runs 2 min ahead
    nonce = secrets.token_hex(16)
    mac = hmac.new(
        SECRET.encode(), canonical("POST", path, timestamp, nonce, body, REMOTE), hashlib.sha256
    ).hexdigest()
    headers = {
        "HTTP_X_CONFIGSYNC_NODE": REMOTE,
        "HTTP_X_CONFIGSYNC_TIMESTAMP": timestamp,
        "HTTP_X_CONFIGSYNC_NONCE": nonce,
        "HTTP_X_CONFIGSYNC_SIGNATURE": mac,
    }
    response = APIClient().generic("POST", path, body, content_type="application/json", **headers)
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["status"] == "conflict"
    assert Conflict.objects.get().skew_affected is True
    assert LOCAL != REMOTE


def test_resolving_to_a_version_a_local_write_would_refuse_changes_nothing() -> None:
    """A conflict kept before received versions were validated cannot write its bad side."""
    from configsync.replication.errors import ConflictResolveError
    from configsync.replication.services.conflicts import conflict_create, conflict_resolve

    system_config_set(key="K", value="5", value_type="int")
    record = ReplicatedRecord.objects.get(natural_key="K")
    bad = {
        "hlc": stamp(REMOTE),
        "origin": REMOTE,
        "deleted": False,
        "data": config_data("K", "abc", value_type="int"),
    }
    local = {"hlc": record.hlc, "origin": LOCAL, "deleted": False, "data": record.data}
    conflict = conflict_create(
        model_label="configsync.systemconfig",
        natural_key="K",
        source="peer",
        local_version=local,
        remote_version=bad,
        winner="local",
    )
    with pytest.raises(ConflictResolveError, match="cannot be stored"):
        conflict_resolve(conflict_id=conflict.pk, choice="remote")
    assert SystemConfig.objects.get(key="K").value == "5"
    assert Conflict.objects.get().status == "open"


def test_a_loser_this_node_cannot_store_is_left_out_and_the_version_applies() -> None:
    loser = {
        "hlc": stamp(REMOTE, wall=physical_now_ms() - 1000),
        "origin": REMOTE,
        "deleted": False,
        "data": config_data("K", "a\x00b"),
    }
    assert statuses([remote_change("K", "winner", losers=[loser])]) == ["applied"]
    assert SystemConfig.objects.get(key="K").value == "winner"
    assert not Conflict.objects.exists()


def test_a_local_provider_write_runs_the_same_rules() -> None:
    from providers.models import AIProviderConfig
    from providers.services import ai_provider_set

    with pytest.raises(ValidationError, match="NUL"):
        ai_provider_set(name="p", kind="openai", api_key="sk-CANARY-\x00")
    with pytest.raises(ValidationError):
        ai_provider_set(name="p", kind="openai", api_key="sk-CANARY-x", default_model="m\ud800")
    with pytest.raises(ValidationError):
        ai_provider_set(name="p", kind="openai", api_key="k" * (70 * 1024))
    assert not AIProviderConfig.objects.exists()


def test_stored_records_that_fail_validation_are_reported_by_a_database_check(
    canary: str,
) -> None:
    """Rows stored before this node validated received versions (or loaded raw) are named at
    ``migrate``/``check --database``: records and rules, never values."""
    from django.core import checks

    from configsync.crypto.fields import Ciphertext

    stolen = Ciphertext(token_for(canary, "OTHER"))
    SystemConfig.objects.bulk_create(
        [
            SystemConfig(key="FINE", value="ok"),
            SystemConfig(key="BADINT", value_type="int", value="abc-" + canary),
            SystemConfig(key="STOLEN", is_sensitive=True, secret_value=stolen),
        ]
    )
    found = [m for m in checks.run_checks(databases=["default"]) if m.id == "configsync.W040"]
    assert sorted(m.msg.split("'")[1] for m in found) == ["BADINT", "STOLEN"]
    assert all(canary not in m.msg and "enc1:" not in m.msg for m in found)


def test_items_that_keep_failing_never_starve_the_rest_of_the_quarantine(
    settings: Any, monkeypatch: Any
) -> None:
    """The automatic pass tries a bounded number of items: the least recently tried first, so
    items that will never apply (garbage, a kind this node lacks) cannot hold back, pass after
    pass, one that would apply now (a held timestamp come within the bound)."""
    from configsync.replication.services import quarantine

    monkeypatch.setattr(quarantine, "RETRY_BATCH", 2)
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 300
    bad = [remote_change(k, data=config_data(k, value="x", value_type="int")) for k in ("B1", "B2")]
    future = remote_change("F", "later", hlc=stamp(REMOTE, wall=physical_now_ms() + 400_000))
    assert statuses([*bad, future]) == ["quarantined"] * 3
    settings.CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS = 600
    for _ in range(3):
        quarantine_retry()
    assert SystemConfig.objects.get(key="F").value == "later"
    assert QuarantinedChange.objects.get(natural_key="F").status == "applied"


def test_no_pattern_of_the_wire_accepts_a_trailing_newline() -> None:
    """``$`` also matches before a final newline: every pattern that checks peer input anchors
    at the very end, so ``"<valid>\\n"`` is refused like any other garbage."""
    from configsync.replication.errors import CursorError
    from configsync.replication.hlc import HLCParseError
    from configsync.replication.selectors.feed import cursor_parse
    from configsync.replication.services.replog import (
        ReplicationLogError,
        replication_log_record,
    )

    with pytest.raises(HLCParseError):
        HLC.parse(stamp(REMOTE) + "\n")
    with pytest.raises(CursorError):
        cursor_parse("abc.1\n")
    with pytest.raises(ReplicationLogError):
        replication_log_record(node=REMOTE, direction="pull", session="abcdef12\n", cursor="1")
    with pytest.raises(ReplicationLogError):
        replication_log_record(node=REMOTE, direction="pull", session="abcdef12", cursor="1\n")
