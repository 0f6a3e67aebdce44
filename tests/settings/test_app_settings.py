"""Each ``CONFIGSYNC_*`` default is written once (``configsync.conf.DEFAULTS``), and a value set in
code that the environment readers would refuse is reported by a system check (E031, E032)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from configsync.conf import DEFAULTS, app_settings
from tests.settings.test_environment import exactly_this_environment

# A valid value for every option settings.base reads with a default, unlike that default.
ALTERED: dict[str, Any] = {
    "NODE_ID": "node-7",
    "ENCRYPTION_KEYS": ["not-validated-unless-set-in-the-environment"],
    "SYNC_SECRET": "sk-CANARY-default-secret",
    "PEERS": ["cloud=https://cfg.example.com"],
    "SYNC_INTERVAL_SECONDS": 45,
    "DEPLOYMENT_MODE": "LOCAL_EXTERNAL",
    "ENV_FILE": "/srv/app/.env",
    "ENV_MANAGE": "prefix:APP_",
    "ENV_STRIP_PREFIX": True,
    "ENV_SECRET_URL_CREDENTIALS": False,
    "DATA_CALLBACK_URL": "https://hooks.example/configsync",
    "PUSH_ON_WRITE": False,
    "CLI_REVEAL": False,
    "R2_ENDPOINT_URL": "https://r2.example.com",
    "R2_BUCKET": "configsync",
    "R2_ACCESS_KEY_ID": "key-id",
    "R2_SECRET_ACCESS_KEY": "sk-CANARY-r2-secret",
    "R2_REGION": "eu-west-1",
    "R2_PREFIX": "cfg",
    "GROUP_ID": "staging",
    "CLOCK_OFFSET_MS": 1234,
    "NATS_URL": "nats://nats.example.com:4222",
    "NATS_USER": "cfg",
    "NATS_PASSWORD": "sk-CANARY-nats-password",
    "NATS_TOKEN": "sk-CANARY-nats-token",
    "NATS_USER_CREDENTIALS": "/srv/app/nats.creds",
    "NATS_TLS_CA_FILE": "/srv/app/ca.pem",
    "NATS_TLS_CERT_FILE": "/srv/app/client.pem",
    "NATS_TLS_KEY_FILE": "/srv/app/client.key",
}
FROM_THE_NODE = {"VAR_DIR", "DEV_KEY_FILE"}  # derived from CONFIGSYNC_VAR_DIR, not defaults


def fresh_base(tmp_path: Path) -> ModuleType:
    """``settings.base`` imported afresh with no configsync variable set."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SECRET_KEY": "django-insecure-test-only",
        "CONFIGSYNC_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
    }
    package = sys.modules["settings"]
    saved = sys.modules.pop("settings.base")
    try:
        with exactly_this_environment(env):
            return importlib.import_module("settings.base")
    finally:
        sys.modules["settings.base"] = saved
        package.base = saved  # type: ignore[attr-defined]


def test_settings_take_every_default_from_configsync_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ALTERED.items():
        assert value != DEFAULTS[name]
        monkeypatch.setitem(DEFAULTS, name, value)
    base = fresh_base(tmp_path)
    assigned = {name for name in DEFAULTS if hasattr(base, f"CONFIGSYNC_{name}")}
    assert assigned - FROM_THE_NODE == set(ALTERED)
    assert {name: getattr(base, f"CONFIGSYNC_{name}") for name in ALTERED} == ALTERED


def sync_setting_errors() -> list[tuple[str, str]]:
    """E031/E032 among every registered check's messages (some checks read the database)."""
    return [
        (m.id or "", m.msg)
        for m in checks.run_checks()
        if m.id in ("configsync.E031", "configsync.E032")
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("interval", [-5, "30", 1.5, True, 86401], ids=repr)
def test_a_malformed_interval_set_in_code_is_reported(settings: Any, interval: Any) -> None:
    settings.CONFIGSYNC_SYNC_INTERVAL_SECONDS = interval
    assert sync_setting_errors() == [
        (
            "configsync.E031",
            "CONFIGSYNC_SYNC_INTERVAL_SECONDS must be a whole number of seconds from 0 to 86400",
        )
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("interval", [0, 30, 86400, None], ids=repr)
def test_a_valid_interval_passes(settings: Any, interval: Any) -> None:
    settings.CONFIGSYNC_SYNC_INTERVAL_SECONDS = interval
    assert sync_setting_errors() == []


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["CLOUD", "local_only", 3], ids=repr)
def test_an_unknown_deployment_mode_set_in_code_is_reported(settings: Any, mode: Any) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = mode
    assert sync_setting_errors() == [
        (
            "configsync.E032",
            "CONFIGSYNC_DEPLOYMENT_MODE must be one of LOCAL_ONLY, LOCAL_EXTERNAL, LOCAL_R2, "
            "LOCAL_EXTERNAL_R2",
        )
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["", None, "LOCAL_ONLY", "LOCAL_EXTERNAL_R2"], ids=repr)
def test_a_known_or_empty_deployment_mode_passes(settings: Any, mode: Any) -> None:
    settings.CONFIGSYNC_DEPLOYMENT_MODE = mode
    assert sync_setting_errors() == []


@pytest.mark.parametrize(("configured", "parsed"), [(45, 45), (0, 0), (None, 0)], ids=repr)
def test_the_interval_is_parsed_in_one_place(settings: Any, configured: Any, parsed: int) -> None:
    settings.CONFIGSYNC_SYNC_INTERVAL_SECONDS = configured
    assert app_settings.sync_interval_seconds == parsed


def test_the_default_database_lives_in_the_nodes_var_directory(tmp_path: Path) -> None:
    # Two nodes on one host told apart by CONFIGSYNC_VAR_DIR alone must not share a database
    # (and so one node id): the README promises that directory holds the node's SQLite.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SECRET_KEY": "django-insecure-test-only",
        "CONFIGSYNC_VAR_DIR": str(tmp_path / "node-b"),
    }
    package = sys.modules["settings"]
    saved = sys.modules.pop("settings.base")
    try:
        with exactly_this_environment(env):
            base = importlib.import_module("settings.base")
    finally:
        sys.modules["settings.base"] = saved
        package.base = saved  # type: ignore[attr-defined]
    assert base.DATABASES["default"]["NAME"] == str(tmp_path / "node-b" / "configsync.sqlite3")


@pytest.mark.django_db
def test_a_test_clock_offset_under_production_settings_is_reported(settings: Any) -> None:
    def e033() -> list[str]:
        return [m.msg for m in checks.run_checks() if m.id == "configsync.E033"]

    settings.CONFIGSYNC_CLOCK_OFFSET_MS = 60_000
    assert e033() == []  # outside production it is what the chaos harness skews a node with
    settings.SETTINGS_MODULE = "settings.production"
    assert e033() == [
        "CONFIGSYNC_CLOCK_OFFSET_MS is a test/development switch and must not be set in production"
    ]
    settings.CONFIGSYNC_CLOCK_OFFSET_MS = 0
    assert e033() == []


def test_a_resolved_option_follows_every_settings_change(settings: Any) -> None:
    """``app_settings`` keeps what it resolved (replication reads options per record) and
    forgets it on ``setting_changed``: an override, its end and a deletion are each seen."""
    assert DEFAULTS["MAX_VALUE_BYTES"] == app_settings.MAX_VALUE_BYTES
    settings.CONFIGSYNC_MAX_VALUE_BYTES = 17
    assert app_settings.MAX_VALUE_BYTES == 17
    with override_settings(CONFIGSYNC_MAX_VALUE_BYTES=5):
        assert app_settings.MAX_VALUE_BYTES == 5
    assert app_settings.MAX_VALUE_BYTES == 17
    del settings.CONFIGSYNC_MAX_VALUE_BYTES
    assert DEFAULTS["MAX_VALUE_BYTES"] == app_settings.MAX_VALUE_BYTES
