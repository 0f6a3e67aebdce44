"""Key rotation against the real database: add a key, rotate, drop the old key, read everything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import post_save, pre_save
from django.test import override_settings

from configsync.crypto.fields import encryption_context
from configsync.crypto.keyring import Keyring, generate_key, parse_key, reset_keyring
from configsync.crypto.rotation import keys_rotate, keys_status
from configsync.models import AuditEvent, SystemConfig
from configsync.services.system_config import system_config_set
from configsync.signals import change_committed
from providers.models import AIProviderConfig
from providers.services import ai_provider_set

pytestmark = pytest.mark.django_db

OLD = generate_key()
NEW = generate_key()
OLD_KID = parse_key(OLD).kid
NEW_KID = parse_key(NEW).kid


def use_keys(*keys: str) -> Any:
    reset_keyring()
    return override_settings(CONFIGSYNC_ENCRYPTION_KEYS=list(keys))


def stored_key_ids() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, secret_value FROM configsync_systemconfig")
        rows = {f"setting:{k}": v for k, v in cursor.fetchall() if v}
        cursor.execute("SELECT name, api_key FROM providers_aiproviderconfig")
        rows.update({f"provider:{k}": v for k, v in cursor.fetchall() if v})
    return {name: token.split(":")[1] for name, token in rows.items()}


@pytest.fixture
def secrets_on_old_key() -> Iterator[dict[str, str]]:
    """Seven settings and two providers encrypted with OLD, plus one plain setting."""
    values = {f"SECRET_{n}": f"sk-CANARY-rotate-{n}" for n in range(7)}
    with use_keys(OLD):
        for key, value in values.items():
            system_config_set(key=key, value=value, is_sensitive=True)
        system_config_set(key="PLAIN", value="not secret")
        ai_provider_set(name="openai-a", kind="openai", api_key="sk-CANARY-provider-a")
        ai_provider_set(name="ollama-local", kind="ollama")
        ai_provider_set(name="anthropic-b", kind="anthropic", api_key="sk-CANARY-provider-b")
    yield values
    reset_keyring()


def read_everything() -> dict[str, str]:
    values = {r.key: r.typed_value() for r in SystemConfig.objects.filter(is_sensitive=True)}
    values.update(
        {p.name: p.api_key for p in AIProviderConfig.objects.filter(api_key__isnull=False)}
    )
    return values


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, sender: Any = None, **kwargs: Any) -> None:
        self.calls.append(str(sender))


def test_add_key_rotate_drop_old_key_and_everything_reads(
    secrets_on_old_key: dict[str, str],
) -> None:
    updated_before = dict(SystemConfig.objects.values_list("key", "updated_at"))
    assert set(stored_key_ids().values()) == {OLD_KID}
    recorder = Recorder()
    for signal in (pre_save, post_save, change_committed):
        signal.connect(recorder, weak=False)
    try:
        with use_keys(NEW, OLD):
            expected = read_everything()
            report = keys_rotate(batch_size=3)
    finally:
        for signal in (pre_save, post_save, change_committed):
            signal.disconnect(recorder)

    assert report.complete and not report.unreadable
    # Nine rows, and the copy of each kept in the history (RecordVersion).
    assert report.rotated == 18 and report.already_current == 0
    assert set(stored_key_ids().values()) == {NEW_KID}
    # Rotation is not a change: no save, no signal — but the run's one audit event.
    assert recorder.calls == [], "rotation is not a change: no save, no signal"
    assert AuditEvent.objects.filter(action="rotate_keys").count() == 1
    assert dict(SystemConfig.objects.values_list("key", "updated_at")) == updated_before

    with use_keys(NEW):  # the old key is gone
        assert read_everything() == expected
        assert expected["SECRET_3"] == "sk-CANARY-rotate-3"
        assert keys_status().not_on_primary == 0


def test_interrupted_rotation_resumes_where_it_stopped(
    secrets_on_old_key: dict[str, str],
) -> None:
    with use_keys(NEW, OLD):
        expected = read_everything()
        first = keys_rotate(batch_size=2, max_batches=2)
        assert not first.complete
        assert first.rotated == 4
        ids = stored_key_ids()
        assert sorted(ids.values()).count(NEW_KID) == 4
        assert keys_status().not_on_primary == 14  # 5 rows and 9 history versions

        second = keys_rotate(batch_size=2)
        assert second.complete
        assert second.rotated == 14 and second.already_current == 4

        third = keys_rotate(batch_size=2)
        assert third.complete and third.rotated == 0 and third.already_current == 18

    assert set(stored_key_ids().values()) == {NEW_KID}
    with use_keys(NEW):
        assert read_everything() == expected


def test_a_value_no_key_can_read_is_reported_and_the_rest_rotates(
    secrets_on_old_key: dict[str, str],
) -> None:
    lost = parse_key(generate_key())
    record = SystemConfig.objects.get(key="SECRET_0")
    orphan = Keyring([lost]).encrypt(
        "sk-CANARY-orphan", context=encryption_context(record, "secret_value")
    )
    SystemConfig.objects.filter(key="SECRET_0").update(secret_value=orphan)

    with use_keys(NEW, OLD):
        report = keys_rotate(batch_size=4)
        status = keys_status()

    assert report.complete
    assert report.rotated == 8 + 9  # the readable rows, and every history version
    assert [(u.model, u.field, u.record) for u in report.unreadable] == [
        ("configsync.systemconfig", "secret_value", "SECRET_0")
    ]
    assert "sk-CANARY" not in str(report.unreadable[0])
    assert status.unknown_key_ids == [lost.kid]
    ids = stored_key_ids()
    assert ids.pop("setting:SECRET_0") == lost.kid
    assert set(ids.values()) == {NEW_KID}


def test_keys_status_counts_tokens_per_key(secrets_on_old_key: dict[str, str]) -> None:
    with use_keys(NEW, OLD):
        status = keys_status()
    assert status.primary_key_id == NEW_KID
    assert status.configured_key_ids == [NEW_KID, OLD_KID]
    assert status.tokens_by_key_id == {OLD_KID: 18}  # nine rows and their history versions
    assert status.not_on_primary == 18 and status.unknown_key_ids == []


def test_the_change_feed_copy_gets_the_same_new_token_and_no_new_version(
    secrets_on_old_key: dict[str, str],
) -> None:
    from configsync.models import ReplicatedRecord

    def feed(key: str) -> tuple[int, str, str | None]:
        record = ReplicatedRecord.objects.get(
            model_label="configsync.systemconfig", natural_key=key
        )
        return record.seq, record.hlc, (record.data or {}).get("secret_value")

    seq_before, hlc_before, token_before = feed("SECRET_1")
    assert token_before is not None and token_before.split(":")[1] == OLD_KID
    with use_keys(NEW, OLD):
        keys_rotate()
    seq_after, hlc_after, token_after = feed("SECRET_1")
    row_token = SystemConfig.objects.values_list("secret_value", flat=True).get(key="SECRET_1")
    assert (seq_after, hlc_after) == (seq_before, hlc_before)
    assert token_after == str(row_token) and token_after.split(":")[1] == NEW_KID


def test_tokens_kept_in_conflicts_rotate_and_an_old_conflict_resolves_readably(
    settings: Any,
) -> None:
    """Rotate, drop the old key, then resolve a conflict kept before: its value still reads."""
    from configsync.models import Conflict
    from configsync.replication.hlc import HLC, physical_now_ms
    from configsync.replication.services.apply import changes_apply
    from configsync.replication.services.conflicts import conflict_resolve

    settings.CONFIGSYNC_NODE_ID = "node-local"
    remote_node = "node-remote"
    with use_keys(OLD):
        system_config_set(key="API_TOKEN", value="sk-CANARY-local-side", is_sensitive=True)
        # The peer's concurrent, later version of the same secret (encrypted with the same key,
        # bound to the same record and field, as a peer sharing the keyring makes it).
        remote_token = Keyring([parse_key(OLD)]).encrypt(
            "sk-CANARY-remote-side", context="configsync.systemconfig.secret_value:API_TOKEN"
        )
        hlc = str(HLC(physical_now_ms() + 1000, 0, remote_node))
        data = {
            "key": "API_TOKEN",
            "value_type": "str",
            "value": "",
            "secret_value": remote_token,
            "is_sensitive": True,
            "category": "general",
            "description": "",
        }
        change = {
            "model": "configsync.systemconfig",
            "key": "API_TOKEN",
            "hlc": hlc,
            "origin": remote_node,
            "vv": {remote_node: hlc},
            "deleted": False,
            "data": data,
        }
        changes_apply(changes=[change], source_node=remote_node, source_name="peer")
    conflict = Conflict.objects.get()
    assert conflict.winner == "remote"
    kept = [conflict.local_version["data"]["secret_value"], conflict.remote_version["data"]]
    assert kept[0].split(":")[1] == OLD_KID and kept[1]["secret_value"] == remote_token

    with use_keys(NEW, OLD):
        before = keys_status()
        report = keys_rotate(batch_size=1)
        after = keys_status()
    # The row, both conflict versions and the two history versions (local, then the peer's).
    assert before.tokens_by_key_id == {OLD_KID: 5}
    assert report.complete and not report.unreadable and report.rotated == 5
    assert after.tokens_by_key_id == {NEW_KID: 5}
    conflict.refresh_from_db()
    assert conflict.status == "open"
    for version in (conflict.local_version, conflict.remote_version):
        assert version["data"]["secret_value"].split(":")[1] == NEW_KID
    assert "sk-CANARY" not in str(conflict.local_version) + str(conflict.remote_version)

    with use_keys(NEW):  # the old key is gone
        conflict_resolve(conflict_id=conflict.pk, choice="local")
        assert SystemConfig.objects.get(key="API_TOKEN").secret_value == "sk-CANARY-local-side"
        again = keys_rotate()
    assert again.rotated == 0 and not again.unreadable


def test_an_unreadable_token_in_a_conflict_is_reported_and_left(
    secrets_on_old_key: dict[str, str],
) -> None:
    from configsync.models import Conflict

    lost = Keyring([parse_key(generate_key())]).encrypt(
        "sk-CANARY-lost", context="configsync.systemconfig.secret_value:SECRET_0"
    )
    version = {"hlc": "x", "origin": "node-a", "deleted": False, "data": {"secret_value": lost}}
    conflict = Conflict.objects.create(
        model_label="configsync.systemconfig",
        natural_key="SECRET_0",
        source="peer",
        local_version=version,
        remote_version={"hlc": "y", "origin": "node-b", "deleted": True, "data": None},
        winner="remote",
    )
    with use_keys(NEW, OLD):
        report = keys_rotate()
    assert report.complete and report.rotated == 18
    assert [(u.model, u.field) for u in report.unreadable] == [
        ("configsync.systemconfig", "secret_value")
    ]
    assert f"conflict {conflict.pk} local_version" in report.unreadable[0].record
    assert "sk-CANARY" not in str(report.unreadable[0])
    conflict.refresh_from_db()
    assert conflict.local_version["data"]["secret_value"] == lost


def test_a_user_password_sealed_in_the_feed_rotates_without_a_new_version() -> None:
    from django.contrib.auth.models import User

    from configsync.crypto.fields import encryption_context_for
    from configsync.crypto.keyring import get_keyring
    from configsync.models import ReplicatedRecord

    def feed() -> tuple[int, str, str]:
        record = ReplicatedRecord.objects.get(model_label="auth.user", natural_key="alice")
        return record.seq, record.hlc, record.data["password"]

    with use_keys(OLD):
        alice = User.objects.create_user("alice", password="CANARY-user-rotate")
        seq_before, hlc_before, token_before = feed()
        assert token_before.split(":")[1] == OLD_KID
    with use_keys(NEW, OLD):
        assert keys_status().tokens_by_key_id == {OLD_KID: 2}  # the feed and the history
        report = keys_rotate()
        seq_after, hlc_after, token_after = feed()
        assert report.rotated == 2 and (seq_after, hlc_after) == (seq_before, hlc_before)
        assert token_after.split(":")[1] == NEW_KID
    with use_keys(NEW):
        context = encryption_context_for(
            model_label="auth.user", field_name="password", natural_key="alice"
        )
        assert get_keyring().decrypt(token_after, context=context) == alice.password
    reset_keyring()


def test_history_versions_rotate_and_a_rollback_works_after_the_old_key_is_gone() -> None:
    from configsync.models import AuditEvent, RecordVersion
    from configsync.replication.selectors.history import CHANGED, record_history
    from configsync.replication.services.rollback import record_rollback

    with use_keys(OLD):
        system_config_set(key="ROLLME", value="sk-CANARY-first", is_sensitive=True)
        system_config_set(key="ROLLME", value="sk-CANARY-second", is_sensitive=True)
        system_config_set(key="ROLLME", category="x")  # the value is kept: the same token
    with use_keys(NEW, OLD):
        assert keys_status().tokens_by_key_id == {OLD_KID: 4}  # the row and three versions
        report = keys_rotate(batch_size=1)
    assert report.complete and report.rotated == 4 and not report.unreadable
    tokens = [v.data["secret_value"] for v in RecordVersion.objects.filter(natural_key="ROLLME")]
    assert {token.split(":")[1] for token in tokens} == {NEW_KID}
    # Versions 2 and 3 shared a token (the value did not change): they still share one.
    by_number = dict(
        RecordVersion.objects.filter(natural_key="ROLLME").values_list("number", "data")
    )
    assert by_number[2]["secret_value"] == by_number[3]["secret_value"]
    event = AuditEvent.objects.filter(action="rotate_keys").get()
    assert event.details["rotated"] == 4 and event.details["complete"] is True
    assert event.details["primary_key_id"] == NEW_KID
    assert "sk-CANARY" not in str(event.details)

    with use_keys(NEW):  # the old key is gone: history still compares, rollback still works
        views = record_history(model_label="configsync.systemconfig", natural_key="ROLLME")
        third = {c.name: c for c in views[0].changes or []}
        assert set(third) == {"category"}  # one shared token: the secret did not change
        second = {c.name: c for c in views[1].changes or []}
        assert second["secret_value"].status == CHANGED  # told by the audit's keyed hashes
        record_rollback(model_label="configsync.systemconfig", natural_key="ROLLME", number=1)
        assert SystemConfig.objects.get(key="ROLLME").secret_value == "sk-CANARY-first"
    reset_keyring()


def test_every_run_writes_one_audit_event_even_when_stopped_early(
    secrets_on_old_key: dict[str, str],
) -> None:
    from configsync.models import AuditEvent

    with use_keys(NEW, OLD):
        keys_rotate(batch_size=2, max_batches=1)
        keys_rotate()
    events = list(AuditEvent.objects.filter(action="rotate_keys").order_by("id"))
    assert [e.details["complete"] for e in events] == [False, True]
    assert [e.details["rotated"] for e in events] == [2, 16]


def test_a_batch_costs_the_same_queries_however_many_records_it_holds(
    secrets_on_old_key: dict[str, str],
) -> None:
    """Set-based: a locking select and one UPDATE per copy per batch, not queries per record."""
    from django.test.utils import CaptureQueriesContext

    from configsync.models import ReplicatedRecord

    def rotate(*keys: str) -> tuple[int, int]:
        with use_keys(*keys), CaptureQueriesContext(connection) as queries:
            report = keys_rotate(batch_size=1000)
        assert report.complete and not report.unreadable
        return report.rotated, len(queries.captured_queries)

    small = rotate(NEW, OLD)
    with use_keys(NEW):
        for n in range(40):
            system_config_set(key=f"MORE_{n}", value=f"sk-CANARY-more-{n}", is_sensitive=True)
    large = rotate(OLD, NEW)  # everything back, five times as many records
    assert (small[0], large[0]) == (18, 98)
    assert large[1] == small[1]
    with use_keys(OLD):
        row = SystemConfig.objects.values_list("secret_value", flat=True).get(key="MORE_7")
        feed = ReplicatedRecord.objects.get(natural_key="MORE_7").data["secret_value"]
        assert feed == str(row) and str(row).split(":")[1] == OLD_KID
        assert SystemConfig.objects.get(key="MORE_7").secret_value == "sk-CANARY-more-7"


def test_an_unreadable_history_token_is_reported_with_its_version_and_a_non_string_ignored(
    secrets_on_old_key: dict[str, str],
) -> None:
    from configsync.models import RecordVersion

    lost = Keyring([parse_key(generate_key())]).encrypt(
        "sk-CANARY-lost", context="configsync.systemconfig.secret_value:SECRET_1"
    )
    version = RecordVersion.objects.get(natural_key="SECRET_1", number=1)
    RecordVersion.objects.filter(pk=version.pk).update(data={**version.data, "secret_value": lost})
    other = RecordVersion.objects.get(natural_key="SECRET_2", number=1)
    RecordVersion.objects.filter(pk=other.pk).update(data={**other.data, "secret_value": 5})

    with use_keys(NEW, OLD):
        report = keys_rotate(batch_size=4)
    assert report.complete and report.rotated == 9 + 7
    assert [(u.model, u.field, u.record) for u in report.unreadable] == [
        ("configsync.systemconfig", "secret_value", "SECRET_1, history version 1")
    ]
    assert RecordVersion.objects.get(pk=version.pk).data["secret_value"] == lost
    assert RecordVersion.objects.get(pk=other.pk).data["secret_value"] == 5
