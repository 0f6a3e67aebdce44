"""Fixtures of the browser tests (``tests.support.browser``): one Chromium per module, a fresh
context per test on the module's own ``server`` fixture, and the screenshot folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.browser import CHROMIUM, artifacts_dir
from tests.support.production_server import ProductionServer


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one module. Not for the session: Playwright's sync API keeps an event loop
    running in the main thread while it is open, and Django refuses database work from a thread
    with a running loop (``SynchronousOnlyOperation``), so a later test on the same pytest
    worker that opens a connection of its own (the in-process nodes of ``tests/chaos``) failed."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, server: ProductionServer) -> Iterator[Page]:
    """A fresh browser context (no cookies) on the module's server."""
    context = browser.new_context(base_url=server.base_url, viewport={"width": 1400, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this module's screenshots go (``$BROWSER_ARTIFACTS``, else a temporary folder)."""
    return artifacts_dir(tmp_path_factory.mktemp("screenshots"))
