"""Signals and system checks are wired in ``AppConfig.ready()`` only, once.

``configsync.signals`` only defines signals; every receiver and check is connected by one
``signals_connect()`` / ``checks_register()`` per subsystem, called from ``ready()``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.apps import apps
from django.core import checks
from django.core.signals import setting_changed
from django.db.models import signals as model_signals
from django.dispatch import Signal

from configsync.signals import change_committed, changes_applied

ROOT = Path(__file__).resolve().parent.parent

SIGNALS: dict[str, Signal] = {
    "change_committed": change_committed,
    "changes_applied": changes_applied,
    "pre_save": model_signals.pre_save,
    "post_save": model_signals.post_save,
    "pre_delete": model_signals.pre_delete,
    "post_delete": model_signals.post_delete,
    "post_migrate": model_signals.post_migrate,
    "setting_changed": setting_changed,
}

_IMPORT_EVERYTHING = """
import importlib, json, pkgutil, weakref
import django
from django.apps import AppConfig
import configsync.apps, providers.apps

# ready() does not run: what is wired after this is wired by importing modules.
configsync.apps.ConfigsyncConfig.ready = AppConfig.ready
providers.apps.ProvidersConfig.ready = AppConfig.ready
django.setup()

from django.core import checks
from django.core.signals import setting_changed
from django.db.models import signals
from configsync.signals import change_committed, changes_applied

imported = 0
for top in ("configsync", "providers"):
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, prefix=top + "."):
        if ".migrations" in info.name:
            continue
        importlib.import_module(info.name)
        imported += 1

def ours(function):
    return getattr(function, "__module__", "").split(".")[0] in ("configsync", "providers")

wired = []
for name, signal in {
    "change_committed": change_committed, "pre_save": signals.pre_save,
    "post_save": signals.post_save, "pre_delete": signals.pre_delete,
    "post_delete": signals.post_delete, "post_migrate": signals.post_migrate,
    "setting_changed": setting_changed,
}.items():
    for entry in signal.receivers:
        receiver = entry[1]() if isinstance(entry[1], weakref.ReferenceType) else entry[1]
        if receiver is not None and ours(receiver):
            wired.append(f"{name}: {receiver.__module__}.{receiver.__qualname__}")
registry = checks.registry.registry
for check in (*registry.registered_checks, *registry.deployment_checks):
    if ours(check):
        wired.append(f"check: {check.__module__}.{check.__qualname__}")
print(json.dumps({"imported": imported, "wired": sorted(wired)}))
"""


def test_importing_every_module_wires_nothing() -> None:
    """Without ``ready()``, importing every module of configsync and providers connects no
    receiver and registers no check (a subprocess: this one's apps are already ready)."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "settings.test", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["imported"] > 100
    assert report["wired"] == []


def _receivers(signal: Signal) -> list[object]:
    found = []
    for entry in signal.receivers:
        receiver = entry[1]() if isinstance(entry[1], weakref.ReferenceType) else entry[1]
        if getattr(receiver, "__module__", "").split(".")[0] in ("configsync", "providers"):
            found.append(receiver)
    return found


@pytest.fixture
def wiring() -> Iterator[dict[str, list[object]]]:
    yield {name: _receivers(signal) for name, signal in SIGNALS.items()}


def test_ready_wires_every_subsystem(wiring: dict[str, list[object]]) -> None:
    def names(signal: str) -> set[str]:
        return {f"{r.__module__}.{r.__qualname__}" for r in wiring[signal]}  # type: ignore[attr-defined]

    assert names("change_committed") == {
        "configsync.receivers.data_callback_on_change",
        "configsync.replication.receivers.push_on_write",
        "configsync.envbridge.receivers.env_sync_on_change",
    }
    assert names("changes_applied") == {
        "configsync.receivers.data_callback_on_applied",
        "configsync.envbridge.receivers.env_sync_on_applied",
        "configsync.lookup._on_changes_applied",
    }
    assert "configsync.replication.receivers._saved" in names("post_save")
    assert "configsync.lookup._on_model_change" in names("post_save")
    assert names("post_migrate") >= {
        "configsync.receivers.node_identity_on_migrate",
        "configsync.replication.receivers._migrated",
    }
    assert names("setting_changed") == {
        "configsync.crypto.keyring.keyring_on_setting_changed",
        "configsync.conf.app_settings_on_setting_changed",
    }
    registered = {f"{c.__module__}.{c.__name__}" for c in checks.registry.registry.get_checks()}
    assert {
        "configsync.checks.check_encryption_keys",
        "configsync.replication.checks.check_stored_records",
    } <= registered


def test_a_second_ready_connects_nothing_twice(wiring: dict[str, list[object]]) -> None:
    registered = len(checks.registry.registry.get_checks(include_deployment_checks=True))
    apps.get_app_config("configsync").ready()
    apps.get_app_config("providers").ready()
    assert {name: _receivers(signal) for name, signal in SIGNALS.items()} == wiring
    assert len(checks.registry.registry.get_checks(include_deployment_checks=True)) == registered
