"""Static files under gunicorn with ``settings.production``: WhiteNoise serves what collectstatic
collected, under hashed names, compressed; the admin and the API docs pages name those files."""

from __future__ import annotations

import gzip
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.support.production_server import ProductionServer


class Assets(HTMLParser):
    """Every ``src`` and ``href`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.stylesheets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.urls.append(str(values[name]))
        if tag == "link" and values.get("rel") == "stylesheet" and values.get("href"):
            self.stylesheets.append(str(values["href"]))


def assets(html: str) -> Assets:
    parser = Assets()
    parser.feed(html)
    return parser


@pytest.fixture
def server(production: ProductionServer) -> ProductionServer:
    return production


def test_the_admin_stylesheet_is_served(server: ProductionServer) -> None:
    response = requests.get(server.url("/static/admin/css/base.css"), timeout=10)
    assert response.status_code == 200, server.logs()
    assert response.headers["Content-Type"].startswith("text/css")
    assert "#header" in response.text or "body" in response.text


def test_the_admin_login_page_names_hashed_files_that_are_served_compressed_and_cached(
    server: ProductionServer,
) -> None:
    page = requests.get(server.url("/admin/login/"), timeout=10)
    assert page.status_code == 200
    stylesheets = assets(page.text).stylesheets
    hashed = [href for href in stylesheets if re.search(r"/base\.[0-9a-f]{12}\.css$", href)]
    assert hashed, stylesheets  # the manifest's name, not /static/admin/css/base.css
    for href in stylesheets:
        response = requests.get(
            urljoin(server.base_url, href), headers={"Accept-Encoding": "gzip"}, timeout=10
        )
        assert response.status_code == 200, href
        assert response.headers["Content-Type"].startswith("text/css")
    raw = requests.get(
        urljoin(server.base_url, hashed[0]), headers={"Accept-Encoding": "gzip"}, stream=True
    )
    assert raw.headers.get("Content-Encoding") == "gzip"
    assert b"body" in gzip.decompress(raw.raw.read())
    # A hashed name never changes content: cached "forever" (WhiteNoise: ten years, immutable).
    assert "immutable" in raw.headers["Cache-Control"]
    assert int(re.search(r"max-age=(\d+)", raw.headers["Cache-Control"]).group(1)) >= 31536000


def test_collectstatic_wrote_the_manifest_into_the_var_dir(server: ProductionServer) -> None:
    manifest = Path(server.env["CONFIGSYNC_VAR_DIR"]) / "static" / "staticfiles.json"
    paths = json.loads(manifest.read_text())["paths"]
    assert "admin/css/base.css" in paths
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in paths
    assert "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in paths


def test_an_unknown_static_file_is_a_404(server: ProductionServer) -> None:
    response = requests.get(server.url("/static/admin/css/nope.css"), timeout=10)
    assert response.status_code == 404


def test_the_landing_page_is_served_in_production(server: ProductionServer) -> None:
    response = requests.get(server.url("/"), timeout=10)
    assert response.status_code == 200
    assert 'href="/admin/"' in response.text
    assert server.env["DJANGO_SECRET_KEY"] not in response.text
    assert server.env["CONFIGSYNC_ENCRYPTION_KEYS"] not in response.text


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_the_api_docs_load_only_this_nodes_files(server: ProductionServer, path: str) -> None:
    name = "docs-" + path.strip("/").replace("/", "-")
    key = server.manage("configsync", "apikey", "create", name).rstrip("\n").split("\n")[-1]
    headers = {"Authorization": f"Api-Key {key}"}
    assert requests.get(server.url(path), timeout=10).status_code in (401, 403)
    page = requests.get(server.url(path), headers=headers, timeout=10)
    assert page.status_code == 200, page.text[:500]
    urls = assets(page.text).urls
    scripts = [url for url in urls if url.endswith(".js")]
    assert scripts, urls
    for url in urls:
        absolute = urljoin(server.url(path), url)
        assert urlsplit(absolute).netloc == urlsplit(server.base_url).netloc, url
        if urlsplit(url).path.startswith("/static/"):
            assert re.search(r"\.[0-9a-f]{12}\.\w+$", urlsplit(url).path), url  # hashed
            response = requests.get(absolute, timeout=10)
            assert response.status_code == 200, url
    assert not re.search(r"https?://", page.text)  # nor in the inline script's configuration
