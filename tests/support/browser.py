"""What every browser test shares: Debian's Chromium, a production server with a superuser,
signing in to the admin, and screenshots saved as test artifacts.

The fixtures (``browser`` once per module, ``page`` per test on the module's ``server``,
``artifacts``) are in ``tests/browser/conftest.py``; a module defines its own ``server`` with
:func:`admin_server`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.support.production_server import ProductionServer, production_server

CHROMIUM = Path("/usr/bin/chromium")
ADMIN_PASSWORD = "a-long-test-only-password-3141"

BROWSER_MARKS = [
    pytest.mark.browser,
    # What the browser checks (the admin's scripts, rendering, clicks) no backend changes; the
    # pages' queries run on both backends in tests/admin and tests/web.
    pytest.mark.one_pass,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium;"
        " .ci/run installs it)",
    ),
]
"""``pytestmark`` of every browser module."""


@contextmanager
def admin_server(folder: Path, *, username: str) -> Iterator[ProductionServer]:
    """A production server (gunicorn, ``settings.production``) with the superuser ``username``
    (password :data:`ADMIN_PASSWORD`)."""
    with production_server(folder) as running:
        running.manage(
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            f"{username}@example.com",
            extra_env={"DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        )
        yield running


def sign_in(page: Page, username: str) -> None:
    """Sign in to the admin as ``username``; returns on the admin's index."""
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


def artifacts_dir(fallback: Path) -> Path:
    """Where screenshots go: ``$BROWSER_ARTIFACTS`` when set, else ``fallback``."""
    configured = os.environ.get("BROWSER_ARTIFACTS")
    folder = Path(configured) if configured else fallback
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shot(page: Page, folder: Path, name: str) -> Path:
    """Save a full-page screenshot as ``<folder>/<name>.png`` and print its path."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
