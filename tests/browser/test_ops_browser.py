"""Operating a node in a browser, as in production: gunicorn with ``settings.production`` and
Debian's Chromium driven by Playwright (``executable_path=/usr/bin/chromium``; never
``playwright install``). Set-up as ``test_admin_browser.py``.

One journey through the admin's sync health, with a screenshot of every page it checks (saved
under ``$BROWSER_ARTIFACTS``, default: pytest's temporary folder; their paths are printed):

1. edit a secret setting in the admin: its value is never shown back (page HTML);
2. add a peer pointing at a dead port of 127.0.0.1, run a (failing) cycle: the index says the
   node is failing and the sync overview marks the peer failing, in colour and words;
3. press "sync now": the cycle is enqueued (the message says so);
4. open a conflict (made with the services), see both versions side by side, "use remote";
5. switch the deployment mode on its page.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.support.browser import BROWSER_MARKS, admin_server, shot, sign_in
from tests.support.production_server import ProductionServer, _command

ADMIN_USER = "ops-admin"
CANARY = "sk-CANARY-browser-ops-0001"
EDITED = "sk-CANARY-browser-ops-0002"

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServer]:
    with admin_server(tmp_path_factory.mktemp("ops-browser"), username=ADMIN_USER) as running:
        running.manage("configsync", "set", "API_TOKEN", CANARY, "--sensitive")
        yield running


def dead_port() -> int:
    """A port of 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_shell(server: ProductionServer, code: str) -> str:
    """Run ``code`` in ``manage.py shell`` as the server's node; the last line it printed."""
    return server.manage("shell", "-c", code).strip().splitlines()[-1]


def test_operate_sync_health_conflicts_and_mode_in_the_admin(
    page: Page, server: ProductionServer, artifacts: Path
) -> None:
    sign_in(page, ADMIN_USER)

    # 1. A secret edited in the admin is never shown back.
    page.goto("/admin/configsync/systemconfig/")
    page.click("text=API_TOKEN")
    page.wait_for_url(re.compile(r"/admin/configsync/systemconfig/\d+/change/$"))
    assert CANARY not in page.content()
    page.fill("#id_value", EDITED)
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(r"/admin/configsync/systemconfig/\d+/change/$"))
    for html in (page.content(),):
        assert EDITED not in html and CANARY not in html
    assert page.locator("#id_value").input_value() == ""
    shot(page, artifacts, "ops-1-secret-edited")
    page.goto("/admin/configsync/systemconfig/")
    assert EDITED not in page.content() and CANARY not in page.content()
    assert "API_TOKEN" in page.content()

    # 2. A peer at a dead port, after a failed cycle, is failing on the index and the overview.
    page.goto("/admin/configsync/peer/add/")
    page.fill("#id_name", "deadpeer")
    page.fill("#id_base_url", f"http://127.0.0.1:{dead_port()}")
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r"/admin/configsync/peer/$"))
    failed = _command(
        [sys.executable, "manage.py", "configsync", "sync", "--peer", "deadpeer"],
        {**server.env, "CONFIGSYNC_SYNC_SECRET": "test-only-sync-secret-" + "x" * 32},
        check=False,
    )
    assert failed.returncode != 0, failed.stdout
    page.reload()
    assert page.locator(".cs-state-failing").count() == 1  # the peer list shows the state
    page.goto("/admin/")
    summary = page.locator("#cs-node-health")
    assert "FAILING" in summary.inner_text()
    shot(page, artifacts, "ops-2-index-failing")
    page.click("#cs-overview-link")
    page.wait_for_url(re.compile(r"/admin/configsync/peer/overview/$"))
    row = page.locator('tr.cs-peer[data-peer="deadpeer"]')
    assert row.get_attribute("data-state") == "failing"
    badge = row.locator(".cs-state")
    assert badge.inner_text().strip() == "FAILING"
    colour = badge.evaluate("element => getComputedStyle(element).backgroundColor")
    assert colour == "rgb(207, 34, 46)", colour  # red, and the word says it too
    last_error = row.locator("td").nth(4).inner_text()
    assert last_error.strip() not in ("", "-"), last_error
    shot(page, artifacts, "ops-3-overview-failing")

    # 3. Sync now: enqueued (the embedded broker holds it; no worker runs in this test).
    page.click("#cs-sync-now")
    page.wait_for_url(re.compile(r"/admin/configsync/peer/overview/$"))
    assert "Sync enqueued with deadpeer." in page.locator(".messagelist").inner_text()
    shot(page, artifacts, "ops-4-sync-now")

    # 4. A conflict, side by side; use the remote version.
    conflict_id = run_shell(
        server,
        "from tests.support.conflicts import setting_conflict;"
        "print(setting_conflict('COLOUR', local='blue', remote='green', peer='far-node').pk)",
    ).strip()
    secret_id = run_shell(
        server,
        "from tests.support.conflicts import setting_conflict;"
        f"print(setting_conflict('SECRET_B', local={CANARY!r}, remote={CANARY!r},"
        " sensitive=True).pk)",
    ).strip()
    page.goto(f"/admin/configsync/conflict/{secret_id}/change/")
    secret_row = page.locator('tr[data-field="secret_value"]')
    assert "********" in secret_row.inner_text()
    assert "same value" in secret_row.inner_text()
    assert CANARY not in page.content()
    shot(page, artifacts, "ops-5-conflict-secret")
    page.goto(f"/admin/configsync/conflict/{conflict_id}/change/")
    value_row = page.locator('tr[data-field="value"]')
    assert value_row.locator(".cs-local").inner_text() == "blue"
    assert value_row.locator(".cs-remote").inner_text() == "green"
    assert "far-node" in page.locator("#cs-conflict").inner_text()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", page.content())
    shot(page, artifacts, "ops-6-conflict-side-by-side")
    page.click("#cs-use-remote")
    page.wait_for_url(re.compile(rf"/admin/configsync/conflict/{conflict_id}/change/$"))
    assert "the remote version used" in page.locator(".messagelist").inner_text()
    assert page.locator("#cs-conflict-status").inner_text() == "Resolved"
    shot(page, artifacts, "ops-7-conflict-resolved")
    value = server.manage("configsync", "get", "COLOUR").strip()
    assert value.endswith("green"), value

    # 5. The deployment mode: its page, its matrix, a switch.
    page.goto("/admin/")
    page.click("#cs-node-mode")
    page.wait_for_url(re.compile(r"/admin/configsync/nodeidentity/\d+/change/$"))
    before = page.locator("#cs-current-mode").inner_text()
    target = "LOCAL_ONLY" if before != "LOCAL_ONLY" else "LOCAL_EXTERNAL"
    page.select_option("#id_deployment_mode", target)
    page.click("#cs-switch-mode")
    page.wait_for_url(re.compile(r"/admin/configsync/nodeidentity/\d+/change/$"))
    assert f"switched from {before} to {target}" in page.locator(".messagelist").inner_text()
    assert page.locator("#cs-current-mode").inner_text() == target
    shot(page, artifacts, "ops-8-mode-switched")
    assert target in server.manage("configsync", "mode", "show")
    assert CANARY not in server.logs() and EDITED not in server.logs()
