"""History and rollback in a real browser (Debian's Chromium via Playwright, gunicorn with
``settings.production``; set-up as in ``test_admin_browser.py``).

Open a setting's "Versions" page from its change page, roll back with the confirmation page, see
the old value restored; a secret's versions page never shows the secret. Screenshots are saved
under ``$BROWSER_ARTIFACTS`` when set, else under the test's temporary directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.support.browser import BROWSER_MARKS, admin_server, shot, sign_in
from tests.support.production_server import ProductionServer

ADMIN_USER = "history-admin"
SECRET = "sk-CANARY-browser-history-secret"
SECRET_2 = "sk-CANARY-browser-history-newer"

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServer]:
    with admin_server(tmp_path_factory.mktemp("browser-history"), username=ADMIN_USER) as running:
        running.manage("configsync", "set", "SITE_TITLE", "The good title")
        running.manage("configsync", "set", "SITE_TITLE", "A bad title")
        running.manage("configsync", "set", "SMTP_PASSWORD", SECRET, "--sensitive")
        running.manage("configsync", "set", "SMTP_PASSWORD", SECRET_2, "--sensitive")
        yield running


def open_change_page(page: Page, key: str) -> None:
    page.goto("/admin/configsync/systemconfig/")
    page.get_by_role("link", name=key, exact=True).click()
    page.wait_for_url(re.compile(r"/admin/configsync/systemconfig/\d+/change/$"))


# The admin quotes keys in URLs as it quotes primary keys ("_" is "_5F").


def test_roll_back_a_setting_with_confirmation(
    page: Page, server: ProductionServer, artifacts: Path
) -> None:
    sign_in(page, ADMIN_USER)
    open_change_page(page, "SITE_TITLE")
    page.locator(".object-tools a.configsync-versions").click()
    page.wait_for_url(re.compile(r"/admin/configsync/systemconfig/versions/SITE_5FTITLE/$"))
    table = page.locator("#configsync-versions-table")
    assert "The good title" in table.inner_text() and "A bad title" in table.inner_text()
    shot(page, artifacts, "history-setting-versions")

    page.locator("tr[data-version='1'] a.configsync-rollback").click()
    page.wait_for_url(re.compile(r"/versions/SITE_5FTITLE/rollback/1/$"))
    assert "Roll SITE_TITLE back to version 1" in page.locator("#content-main").inner_text()
    shot(page, artifacts, "history-rollback-confirmation")
    page.click("#configsync-confirm-rollback")
    page.wait_for_url(re.compile(r"/admin/configsync/systemconfig/versions/SITE_5FTITLE/$"))
    assert "rolled back to version 1" in page.locator(".messagelist").inner_text()
    newest = page.locator("tr[data-version='3']")
    assert "(current)" in newest.inner_text() and "rollback" in newest.inner_text()
    shot(page, artifacts, "history-rolled-back")

    # The old value is restored: the command line reads it, and the change page shows it.
    assert server.manage("configsync", "get", "SITE_TITLE").strip().splitlines()[-1] == (
        "The good title"
    )
    open_change_page(page, "SITE_TITLE")
    assert page.locator("#id_value").input_value() == "The good title"


def test_a_secrets_versions_page_never_shows_the_secret(page: Page, artifacts: Path) -> None:
    sign_in(page, ADMIN_USER)
    open_change_page(page, "SMTP_PASSWORD")
    page.locator(".object-tools a.configsync-versions").click()
    page.wait_for_url(re.compile(r"/versions/SMTP_5FPASSWORD/$"))
    html = page.content()
    assert SECRET not in html and SECRET_2 not in html
    assert "enc1:" not in html
    assert "********" in page.locator("#configsync-versions-table").inner_text()
    assert "value changed" in page.locator("#configsync-versions-table").inner_text()
    shot(page, artifacts, "history-secret-versions")

    page.locator("tr[data-version='1'] a.configsync-rollback").click()
    page.wait_for_url(re.compile(r"/versions/SMTP_5FPASSWORD/rollback/1/$"))
    assert SECRET not in page.content() and SECRET_2 not in page.content()
