"""History and rollback: ``selectors/history.py`` (versions, the masked view, the diff) and
``services/rollback.py`` (a rollback is a new local change that wins; bad input writes nothing)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings

from configsync.actor import ROLLBACK
from configsync.crypto.keyring import generate_key, parse_key, reset_keyring
from configsync.models import AuditEvent, RecordVersion, ReplicatedRecord, SystemConfig
from configsync.replication.hlc import HLC
from configsync.replication.selectors.history import (
    CHANGED,
    MASK,
    SAME,
    HistoryError,
    record_history,
    record_version_get,
    record_versions,
)
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.rollback import RollbackError, record_rollback
from configsync.selectors.system_config import system_config_get
from configsync.services.system_config import system_config_delete, system_config_set
from providers.models import AIProviderConfig
from providers.services import ai_provider_set
from tests.support.replication import LOCAL, REMOTE, config_data, remote_change

pytestmark = pytest.mark.django_db

LABEL = "configsync.systemconfig"


def _set(key: str, value: str, **extra: Any) -> SystemConfig:
    return system_config_set(key=key, value=value, **extra)


def test_versions_are_newest_first_with_a_plain_diff() -> None:
    _set("SITE_NAME", "one")
    _set("SITE_NAME", "two")
    versions = record_versions(model_label=LABEL, natural_key="SITE_NAME")
    assert [v.number for v in versions] == [2, 1]
    views = record_history(model_label="CONFIGSYNC.SystemConfig", natural_key="SITE_NAME")
    newest, first = views
    assert newest.current and not first.current
    assert newest.fields["value"] == "two"
    assert [(c.name, c.before, c.after) for c in newest.changes or []] == [("value", "one", "two")]
    assert {c.name for c in first.changes or []} >= {"key", "value"}  # a create: all added
    assert newest.origin_node == LOCAL
    assert newest.time.endswith(" UTC") and newest.time[:2] == "20"


def test_a_secret_is_masked_and_its_diff_says_changed_or_same(canary: str) -> None:
    _set("API_TOKEN", canary, is_sensitive=True)
    _set("API_TOKEN", canary + "-2", is_sensitive=True)
    _set("API_TOKEN", canary + "-2", is_sensitive=True, description="same value, new text")
    views = record_history(model_label=LABEL, natural_key="API_TOKEN")
    text = repr([v.as_dict() for v in views])
    assert canary not in text
    assert all(v.fields["secret_value"] == MASK for v in views)
    by_number = {v.number: v for v in views}
    changed = {c.name: c for c in by_number[2].changes or []}
    assert changed["secret_value"].status == CHANGED
    assert changed["secret_value"].before == MASK and changed["secret_value"].after == MASK
    third = {c.name: c for c in by_number[3].changes or []}
    assert "description" in third
    # The value was written again: a new token, the same value.
    assert third["secret_value"].status == SAME


def test_a_value_that_was_plain_is_masked_once_the_setting_is_sensitive(canary: str) -> None:
    _set("LEAKY", canary)
    _set("LEAKY", canary + "x", is_sensitive=True)
    text = repr([v.as_dict() for v in record_history(model_label=LABEL, natural_key="LEAKY")])
    assert canary not in text


def test_unknown_model_and_missing_version_are_clear_errors() -> None:
    with pytest.raises(HistoryError, match="not a replicated model"):
        record_history(model_label="configsync.nothing", natural_key="X")
    with pytest.raises(HistoryError, match="no kept version 7"):
        record_version_get(model_label=LABEL, natural_key="X", number=7)


def test_only_the_newest_n_versions_are_kept(settings: Any) -> None:
    settings.CONFIGSYNC_HISTORY_VERSIONS = 3
    for n in range(5):
        _set("ROLLING", f"v{n}")
    views = record_history(model_label=LABEL, natural_key="ROLLING")
    assert [v.number for v in views] == [5, 4, 3]
    assert views[-1].changes is None  # its previous version is no longer kept


def test_rollback_writes_the_old_version_as_a_new_change_that_wins() -> None:
    _set("MODE", "good")
    _set("MODE", "bad")
    before = ReplicatedRecord.objects.get(model_label=LABEL, natural_key="MODE")
    record = record_rollback(model_label=LABEL, natural_key="MODE", number=1)
    assert system_config_get(key="MODE").value == "good"
    assert HLC.parse(record.hlc) > HLC.parse(before.hlc)
    assert record.seq > before.seq
    newest = record_versions(model_label=LABEL, natural_key="MODE")[0]
    assert newest.number == 3 and newest.via == ROLLBACK
    event = AuditEvent.objects.filter(natural_key="MODE").order_by("-id").first()
    assert event is not None
    assert event.via == ROLLBACK
    assert event.details == {"rolled_back_to": 1, "version": 3}
    assert event.changed_fields == ["value"]


def test_rollback_to_a_delete_deletes_and_back_again_restores() -> None:
    _set("GONE", "here")
    system_config_delete(key="GONE")
    _set("GONE", "back")
    record_rollback(model_label=LABEL, natural_key="GONE", number=2)
    assert not SystemConfig.objects.filter(key="GONE").exists()
    assert ReplicatedRecord.objects.get(model_label=LABEL, natural_key="GONE").deleted
    record_rollback(model_label=LABEL, natural_key="GONE", number=1)
    assert system_config_get(key="GONE").value == "here"


def test_rollback_of_a_secret_restores_it_without_decrypting_it_out(canary: str) -> None:
    _set("TOKEN", canary, is_sensitive=True)
    _set("TOKEN", "sk-CANARY-replaced", is_sensitive=True)
    record_rollback(model_label=LABEL, natural_key="TOKEN", number=1)
    assert system_config_get(key="TOKEN").raw_value() == canary
    assert AuditEvent.objects.filter(natural_key="TOKEN", via=ROLLBACK).count() == 1


def _state() -> tuple[int, int, int]:
    return (
        RecordVersion.objects.count(),
        AuditEvent.objects.count(),
        ReplicatedRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0,
    )


@pytest.mark.parametrize("number", [0, 3, 99], ids=["zero", "next", "far"])
def test_rollback_to_a_version_that_does_not_exist_writes_nothing(number: int) -> None:
    _set("KEEP", "a")
    _set("KEEP", "b")
    state = _state()
    with pytest.raises(RollbackError, match=f"no kept version {number}"):
        record_rollback(model_label=LABEL, natural_key="KEEP", number=number)
    assert _state() == state
    assert system_config_get(key="KEEP").value == "b"


def test_rollback_of_an_unknown_model_or_record_is_refused() -> None:
    with pytest.raises(RollbackError, match="not a replicated model"):
        record_rollback(model_label="auth.permission", natural_key="x", number=1)
    with pytest.raises(RollbackError, match="no kept version 1"):
        record_rollback(model_label=LABEL, natural_key="NEVER", number=1)


def test_a_version_that_no_longer_validates_is_refused() -> None:
    _set("PORT", "80", value_type="int")
    _set("PORT", "81", value_type="int")
    version = record_version_get(model_label=LABEL, natural_key="PORT", number=1)
    version.data = {**version.data, "value": "not a number"}
    version.save()
    state = _state()
    with pytest.raises(RollbackError, match="no longer passes validation"):
        record_rollback(model_label=LABEL, natural_key="PORT", number=1)
    assert _state() == state
    assert system_config_get(key="PORT").value == "81"


def test_a_secret_this_node_cannot_decrypt_is_refused(canary: str, settings: Any) -> None:
    old = generate_key()
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [old]
    reset_keyring()
    _set("SEALED", canary, is_sensitive=True)
    _set("SEALED", canary + "-2", is_sensitive=True)
    new = generate_key()
    assert parse_key(new).kid != parse_key(old).kid
    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[new]):
        reset_keyring()
        state = _state()
        with pytest.raises(RollbackError, match="cannot be decrypted on this node") as info:
            record_rollback(model_label=LABEL, natural_key="SEALED", number=1)
        assert canary not in str(info.value)
        assert _state() == state
    reset_keyring()


def test_a_peer_version_is_kept_with_its_origin_and_can_be_rolled_back() -> None:
    _set("SHARED", "mine")
    item = remote_change("SHARED", data=config_data("SHARED", "theirs"))
    item["vv"] = {
        **ReplicatedRecord.objects.get(natural_key="SHARED").version_vector,
        REMOTE: item["hlc"],
    }
    results = changes_apply(changes=[item], source_node=REMOTE, source_name="peer-b")
    assert results[0].status == "applied", results
    views = record_history(model_label=LABEL, natural_key="SHARED")
    assert views[0].origin_node == REMOTE and views[0].via == "peer"
    assert views[0].actor.startswith("peer:")
    record_rollback(model_label=LABEL, natural_key="SHARED", number=1)
    assert system_config_get(key="SHARED").value == "mine"
    assert record_history(model_label=LABEL, natural_key="SHARED")[0].origin_node == LOCAL


def test_providers_and_groups_have_history_and_rollback(canary: str) -> None:
    ai_provider_set(name="main", kind="openai", api_key=canary, default_model="gpt-4o-mini")
    ai_provider_set(name="main", default_model="gpt-4o")
    views = record_history(model_label="providers.aiproviderconfig", natural_key="main")
    assert canary not in repr([v.as_dict() for v in views])
    assert views[1].fields["api_key"] == MASK
    record_rollback(model_label="providers.aiproviderconfig", natural_key="main", number=1)
    provider = AIProviderConfig.objects.get(name="main")
    assert provider.default_model == "gpt-4o-mini" and provider.api_key == canary

    Group.objects.create(name="ops")
    Group.objects.filter(name="ops").get().delete()
    record_rollback(model_label="auth.group", natural_key="ops", number=1)
    assert Group.objects.filter(name="ops").exists()


def test_rollback_to_a_default_provider_takes_the_default_over(canary: str) -> None:
    ai_provider_set(name="first", kind="openai", api_key=canary, is_default=True)
    ai_provider_set(name="second", kind="openai", api_key=canary)
    ai_provider_set(name="second", is_default=True)  # first is no longer the default
    second_seq = ReplicatedRecord.objects.get(natural_key="second").seq

    record_rollback(model_label="providers.aiproviderconfig", natural_key="first", number=1)

    # The rollback wins like any write that makes a provider the default: the other one is
    # cleared by an ordinary local write (it replicates too), not refused by the database.
    assert list(AIProviderConfig.objects.filter(is_default=True).values_list("name")) == [
        ("first",)
    ]
    second = ReplicatedRecord.objects.get(natural_key="second")
    assert second.seq > second_seq and second.data is not None
    assert second.data["is_default"] is False


def test_rollback_to_the_current_version_writes_it_again_as_the_next_one() -> None:
    _set("SAME", "one")
    _set("SAME", "two")
    before = ReplicatedRecord.objects.get(model_label=LABEL, natural_key="SAME")

    record = record_rollback(model_label=LABEL, natural_key="SAME", number=2)

    assert system_config_get(key="SAME").value == "two"
    assert HLC.parse(record.hlc) > HLC.parse(before.hlc) and record.seq > before.seq
    newest = record_versions(model_label=LABEL, natural_key="SAME")[0]
    assert (newest.number, newest.via, newest.data) == (3, ROLLBACK, before.data)


def test_a_uniqueness_rule_no_hook_settles_is_a_clear_refusal(
    canary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from configsync.replication.services import local

    ai_provider_set(name="first", kind="openai", api_key=canary, is_default=True)
    ai_provider_set(name="second", kind="openai", api_key=canary, is_default=True)
    monkeypatch.setattr(local, "before_apply", lambda label: None)  # a model with no hook
    before = list(ReplicatedRecord.objects.values_list("natural_key", "seq"))
    events = AuditEvent.objects.count()

    with pytest.raises(RollbackError, match="uniqueness rule"):
        record_rollback(model_label="providers.aiproviderconfig", natural_key="first", number=1)

    assert list(ReplicatedRecord.objects.values_list("natural_key", "seq")) == before
    assert AuditEvent.objects.count() == events
    assert AIProviderConfig.objects.get(is_default=True).name == "second"
