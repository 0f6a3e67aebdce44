"""Behind a TLS-terminating proxy: ``DJANGO_CSRF_TRUSTED_ORIGINS`` and
``DJANGO_SECURE_PROXY_SSL_HEADER`` reach Django's settings; a malformed origin stops start-up
with one line naming the variable."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.settings.test_environment import exactly_this_environment, load_settings


def fresh_base(tmp_path: Path, **extra: str) -> ModuleType:
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SECRET_KEY": "django-insecure-test-only",
        "CONFIGSYNC_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        **extra,
    }
    package: Any = sys.modules["settings"]
    saved = sys.modules.pop("settings.base")
    try:
        with exactly_this_environment(env):
            return importlib.import_module("settings.base")
    finally:
        sys.modules["settings.base"] = saved
        package.base = saved


def test_nothing_is_trusted_by_default(tmp_path: Path) -> None:
    base = fresh_base(tmp_path)
    assert base.CSRF_TRUSTED_ORIGINS == []
    assert not hasattr(base, "SECURE_PROXY_SSL_HEADER")


def test_a_proxy_setup_reaches_the_settings(tmp_path: Path) -> None:
    base = fresh_base(
        tmp_path,
        DJANGO_CSRF_TRUSTED_ORIGINS="https://cfg.example.com,https://cfg2.example.com:8443",
        DJANGO_SECURE_PROXY_SSL_HEADER="true",
    )
    assert base.CSRF_TRUSTED_ORIGINS == ["https://cfg.example.com", "https://cfg2.example.com:8443"]
    assert base.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.mark.parametrize(
    "origin", ["cfg.example.com", "https://cfg.example.com/admin", "ftp://x", "https://x.io?a=1"]
)
def test_a_malformed_origin_stops_start_up_in_one_line(tmp_path: Path, origin: str) -> None:
    status, stderr = load_settings("production", tmp_path, DJANGO_CSRF_TRUSTED_ORIGINS=origin)
    assert status == 3
    assert stderr.strip().count("\n") == 0 and "DJANGO_CSRF_TRUSTED_ORIGINS" in stderr
