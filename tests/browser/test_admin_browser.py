"""The first hour in a browser, as in production: gunicorn with ``settings.production``, Debian's
Chromium driven by Playwright (``executable_path=/usr/bin/chromium``; never ``playwright
install``).

One journey: sign in to the admin, see it styled (the stylesheet is served and applied), create
an API key on the admin's add page (shown once, in the success message), and read a setting over
REST with that key. The API docs pages then load nothing from another host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Page, Request, Response

from tests.support.browser import BROWSER_MARKS, admin_server, sign_in
from tests.support.production_server import ProductionServer

ADMIN_USER = "first-admin"
API_KEY = re.compile(r"\b[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}\b")
"""djangorestframework-api-key's keys: an 8-character prefix, a dot, a 32-character secret."""

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionServer]:
    with admin_server(tmp_path_factory.mktemp("browser"), username=ADMIN_USER) as running:
        running.manage("configsync", "set", "SITE_NAME", "Browser proof", "--category", "site")
        yield running


@dataclass
class Traffic:
    """Every request a page made, and those its Content-Security-Policy stopped."""

    requested: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def _failed(self, request: Request) -> None:
        if (request.failure or "").lower() in ("csp", "net::err_blocked_by_csp"):
            self.blocked.append(request.url)


def record_traffic(page: Page) -> Traffic:
    traffic = Traffic()
    page.on("request", lambda request: traffic.requested.append(request.url))
    page.on("requestfailed", traffic._failed)
    return traffic


def test_sign_in_styled_admin_create_an_api_key_and_read_a_setting_with_it(
    page: Page, server: ProductionServer
) -> None:
    stylesheets: dict[str, int] = {}

    def note_stylesheet(response: Response) -> None:
        if urlsplit(response.url).path.endswith(".css"):
            stylesheets[response.url] = response.status

    page.on("response", note_stylesheet)
    sign_in(page, ADMIN_USER)
    assert ADMIN_USER.upper() in page.locator("#user-tools").inner_text().upper()

    # Styled: the admin's stylesheets (hashed names, WhiteNoise) answered 200 and apply.
    base_css = [
        url for url in stylesheets if re.search(r"/admin/css/base\.[0-9a-f]{12}\.css$", url)
    ]
    assert base_css, stylesheets
    assert all(status == 200 for status in stylesheets.values()), stylesheets
    header_background = page.evaluate(
        "getComputedStyle(document.querySelector('#header')).backgroundColor"
    )
    assert header_background not in ("", "rgba(0, 0, 0, 0)", "transparent"), header_background

    # An API key, created in the admin: its one "API keys" link leads to the model that
    # authentication checks (ServiceAPIKey), not the package's stock model.
    api_keys = page.get_by_role("link", name="API keys", exact=True)
    assert api_keys.count() == 1
    api_keys.click()
    page.wait_for_url(re.compile(r"/admin/configsync/serviceapikey/$"))
    page.click(".object-tools a.addlink")
    page.wait_for_url(re.compile(r"/admin/configsync/serviceapikey/add/$"))
    page.fill("#id_name", "browser-proof")
    page.click("input[name=_save]")
    message = page.locator(".messagelist").inner_text()
    found = API_KEY.search(message)
    assert found, message
    key = found.group(0)
    page.reload()
    assert key not in page.content()  # shown once only

    # The key reads the setting over REST (no browser session: the key alone).
    response = requests.get(
        server.url("/api/v1/configs/system/SITE_NAME/"),
        headers={"Authorization": f"Api-Key {key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["value"] == "Browser proof"
    refused = requests.get(
        server.url("/api/v1/configs/system/SITE_NAME/"),
        headers={"Authorization": f"Api-Key {key[:-1]}{'y' if key.endswith('x') else 'x'}"},
        timeout=10,
    )
    assert refused.status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_the_api_docs_render_from_this_node_alone(
    page: Page, server: ProductionServer, path: str
) -> None:
    sign_in(page, ADMIN_USER)
    traffic = record_traffic(page)
    page.goto(path, wait_until="networkidle")
    # Rendered: the operations of the schema are on the page (Swagger UI or Redoc drew them).
    page.get_by_text("/api/v1/configs/system/", exact=False).first.wait_for(timeout=30_000)
    own = urlsplit(server.base_url).netloc
    elsewhere = [
        url
        for url in traffic.requested
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != own
    ]
    # Nothing left for another host: the page's policy stopped what the bundle tried (Redoc's
    # footer logo from Redocly's CDN), in the browser, before any connection.
    assert set(elsewhere) <= set(traffic.blocked), elsewhere
    assert any("/static/drf_spectacular_sidecar/" in url for url in traffic.requested)


def test_the_landing_page_signed_out(page: Page) -> None:
    page.goto("/")
    assert page.locator("#node-id").inner_text().strip()
    page.click("text=Admin")
    page.wait_for_url(re.compile(r"/admin/login/"))
