"""Django's users and groups replicate: names, flags, groups by name, permissions by natural key,
and the password hash only as ciphertext (feed, wire, kept versions), never in a log."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import get_keyring, is_token
from configsync.logging import mask_text
from configsync.models import QuarantinedChange, ReplicatedRecord
from configsync.replication.context import applying_remote
from configsync.replication.selectors.feed import feed_page
from configsync.replication.services.apply import changes_apply
from tests.support.replication import LOCAL, REMOTE, remote_change

pytestmark = pytest.mark.django_db

PASSWORD = "CANARY-password-not-real-7f3a"


def _apply(item: dict[str, Any]) -> list[Any]:
    return changes_apply(changes=[item], source_node=REMOTE, source_name="peer")


def _record(label: str, key: str) -> ReplicatedRecord:
    return ReplicatedRecord.objects.get(model_label=label, natural_key=key)


def _wire_of_a_fresh_user() -> dict[str, Any]:
    """The wire form of a user made here, then forgotten (as if it lived on another node)."""
    ops = Group.objects.create(name="ops")
    ops.permissions.add(Permission.objects.get_by_natural_key("change_user", "auth", "user"))
    alice = User.objects.create_user(
        "alice", email="alice@example.invalid", password=PASSWORD, first_name="Alice"
    )
    alice.is_staff = True
    alice.save()
    alice.groups.add(ops)
    data = dict(_record("auth.user", "alice").data)
    with applying_remote():
        alice.delete()
        ops.delete()
    ReplicatedRecord.objects.all().delete()
    return data


def test_the_feed_and_the_wire_hold_the_password_hash_only_as_ciphertext() -> None:
    alice = User.objects.create_user("alice", password=PASSWORD)
    data = _record("auth.user", "alice").data
    assert is_token(data["password"])
    assert "last_login" not in data
    context = encryption_context_for(
        model_label="auth.user", field_name="password", natural_key="alice"
    )
    assert get_keyring().decrypt(data["password"], context=context) == alice.password
    page = json.dumps(feed_page(node=LOCAL, cursor=None, limit=100).changes)
    assert alice.password not in page and PASSWORD not in page
    assert alice.password.split("$")[-1] not in page


def test_a_login_is_no_new_version_and_a_new_password_is() -> None:
    alice = User.objects.create_user("alice", password=PASSWORD)
    first = _record("auth.user", "alice")
    alice.last_login = timezone.now()
    alice.save(update_fields=["last_login"])
    alice.save()
    assert _record("auth.user", "alice").seq == first.seq
    alice.set_password(PASSWORD + "-new")
    alice.save()
    changed = _record("auth.user", "alice")
    assert changed.seq > first.seq and changed.data["password"] != first.data["password"]


def test_group_membership_changes_are_versions_with_groups_by_name() -> None:
    alice = User.objects.create_user("alice", password=PASSWORD)
    ops = Group.objects.create(name="ops")
    alice.groups.add(ops)
    assert _record("auth.user", "alice").data["groups"] == ["ops"]
    ops.user_set.remove(alice)
    assert _record("auth.user", "alice").data["groups"] == []
    ops.permissions.add(Permission.objects.get_by_natural_key("add_user", "auth", "user"))
    assert _record("auth.group", "ops").data["permissions"] == [["add_user", "auth", "user"]]


def test_applying_a_user_creates_it_with_its_groups_and_it_logs_in_with_the_same_password(
    client: Any,
) -> None:
    data = _wire_of_a_fresh_user()
    results = _apply(remote_change("alice", model="auth.user", data=data))
    assert [r.status for r in results] == ["applied"]
    alice = User.objects.get(username="alice")
    assert alice.check_password(PASSWORD)
    assert (alice.email, alice.first_name, alice.is_staff) == (
        "alice@example.invalid",
        "Alice",
        True,
    )
    assert [g.name for g in alice.groups.all()] == ["ops"]  # created by name, filled in later
    assert client.login(username="alice", password=PASSWORD)
    # The group's own version fills in its permissions.
    group_data = {"name": "ops", "permissions": [["change_user", "auth", "user"]]}
    assert [
        r.status for r in _apply(remote_change("ops", model="auth.group", data=group_data))
    ] == ["applied"]
    assert alice.has_perm("auth.change_user")


def test_applying_a_new_password_updates_the_user() -> None:
    data = _wire_of_a_fresh_user()
    User.objects.create_user("alice", password="old-CANARY-password")
    ReplicatedRecord.objects.all().delete()
    assert [r.status for r in _apply(remote_change("alice", model="auth.user", data=data))] == [
        "applied"
    ]
    assert User.objects.get(username="alice").check_password(PASSWORD)


@pytest.mark.parametrize("make", ["empty", "unusable"])
def test_a_user_made_without_a_password_replicates_and_cannot_log_in(
    make: str, client: Any
) -> None:
    """Found by the chaos harness: a user a local write stored with an empty password (as
    ``User.objects.create`` does) was quarantined by every peer, so the nodes never converged."""
    if make == "empty":
        User.objects.create(username="bob", email="bob@example.invalid")
    else:
        User.objects.create_user("bob", email="bob@example.invalid")  # the "!" form
    data = dict(_record("auth.user", "bob").data)
    with applying_remote():
        User.objects.filter(username="bob").delete()
    ReplicatedRecord.objects.all().delete()
    results = _apply(remote_change("bob", model="auth.user", data=data))
    assert [r.status for r in results] == ["applied"]
    bob = User.objects.get(username="bob")
    assert bob.email == "bob@example.invalid"
    assert not bob.has_usable_password() or bob.password == ""
    assert not client.login(username="bob", password="")
    assert QuarantinedChange.objects.count() == 0


def _sealed(value: str, key: str = "alice") -> str:
    context = encryption_context_for(
        model_label="auth.user", field_name="password", natural_key=key
    )
    return get_keyring().encrypt(value, context=context)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"password": make_password(PASSWORD)}, "password: must be a configsync ciphertext token"),
        ({"password": "not-a-hash"}, "password: must be a configsync ciphertext token"),
        ({"password": _sealed.__name__}, "password: must be a configsync ciphertext token"),
        ({"permissions_of_group": True}, "user_permissions: a related row named here does not"),
        ({"groups": ["x" * 200]}, "groups: a related key is not valid"),
        ({"email": "not an email"}, "email"),
        ({"groups": "ops"}, "data: invalid"),
    ],
    ids=[
        "plain-hash",
        "plain-text",
        "not-a-token",
        "unknown-permission",
        "long-group",
        "email",
        "groups-type",
    ],
)
def test_a_bad_user_is_quarantined_and_changes_nothing(change: dict[str, Any], reason: str) -> None:
    data = _wire_of_a_fresh_user()
    if change.pop("permissions_of_group", False):
        change["user_permissions"] = [["no_such_codename", "auth", "user"]]
    data.update(change)
    results = _apply(remote_change("alice", model="auth.user", data=data))
    assert [r.status for r in results] == ["quarantined"]
    assert reason in (results[0].reason or "")
    assert not User.objects.filter(username="alice").exists()
    assert QuarantinedChange.objects.count() == 1


@pytest.mark.parametrize(
    ("plain", "key"),
    [("not-a-hash", "alice"), ("of-another-user", "bob")],
    ids=["sealed-non-hash", "token-of-another-record"],
)
def test_a_sealed_value_that_is_no_hash_of_this_user_is_quarantined(plain: str, key: str) -> None:
    data = _wire_of_a_fresh_user()
    data["password"] = _sealed(make_password(PASSWORD) if key != "alice" else plain, key)
    results = _apply(remote_change("alice", model="auth.user", data=data))
    assert [r.status for r in results] == ["quarantined"]
    assert "password" in (results[0].reason or "")
    assert not User.objects.filter(username="alice").exists()


def test_the_password_and_its_hash_never_reach_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    data = _wire_of_a_fresh_user()
    hashed = get_keyring().decrypt(
        data["password"],
        context=encryption_context_for(
            model_label="auth.user", field_name="password", natural_key="alice"
        ),
    )
    bad = dict(data, groups=["x" * 200])
    _apply(remote_change("alice", model="auth.user", data=bad))
    _apply(remote_change("alice", model="auth.user", data=data))
    stored = json.dumps(list(QuarantinedChange.objects.values_list("payload", flat=True)))
    assert hashed not in stored and PASSWORD not in stored
    assert User.objects.get(username="alice").check_password(PASSWORD)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert hashed not in text and PASSWORD not in text
    # A hash this node decrypted is masked by the logging filter wherever it would appear.
    assert hashed not in mask_text(f"oops: {hashed}")
