"""The database check that warns about stored values no configured key can read."""

from __future__ import annotations

import pytest
from django.test import override_settings

from configsync.checks import check_stored_key_ids
from configsync.crypto.keyring import generate_key, reset_keyring
from configsync.services.system_config import system_config_set

pytestmark = pytest.mark.django_db


def test_values_on_an_unknown_key_are_reported_without_values(canary: str) -> None:
    system_config_set(key="READABLE", value="sk-CANARY-ok", is_sensitive=True)
    assert check_stored_key_ids(databases=["default"]) == []

    with override_settings(CONFIGSYNC_ENCRYPTION_KEYS=[generate_key()]):
        system_config_set(key="ELSEWHERE", value=canary, is_sensitive=True)
    reset_keyring()

    messages = check_stored_key_ids(databases=["default"])
    assert [m.id for m in messages] == ["configsync.W002"]
    assert "2 stored encrypted value(s)" in messages[0].msg  # the row and its history version
    assert canary not in messages[0].msg
    assert check_stored_key_ids(databases=None) == []  # only when asked to touch the database
