"""The API docs (Swagger UI, Redoc) come from this node's static files: no other host is named
by the page, its inline configuration or the stylesheets and scripts it loads."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from tests.support.api import key_client

pytestmark = pytest.mark.django_db

DOCS = ["/api/v1/docs/", "/api/v1/redoc/"]


class Refs(HTMLParser):
    """Every ``src``/``href`` attribute, and the text of inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(str(v) for name, v in attrs if name in ("src", "href") and v)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.scripts.append(data)


def refs(html: str) -> Refs:
    parser = Refs()
    parser.feed(html)
    return parser


def is_same_host(url: str) -> bool:
    """Relative (no scheme, no host), or on the test client's own host."""
    parts = urlsplit(url)
    return (not parts.scheme and not parts.netloc) or parts.netloc == "testserver"


@pytest.mark.parametrize("path", DOCS)
def test_the_docs_page_names_no_other_host(path: str) -> None:
    response = key_client().get(path)
    assert response.status_code == 200
    page = refs(response.content.decode())
    assert any(url.endswith(".js") for url in page.urls), page.urls
    for url in page.urls:
        assert is_same_host(url), url
        if url.startswith("/static/"):
            assert finders.find(url.removeprefix("/static/")), url  # shipped, not fetched
    for script in page.scripts:  # the inline configuration: no URL of any host
        assert not re.search(r"(https?:)?//[\w.-]+\.\w", script), script[:300]
    assert not re.search(r"https?://", response.content.decode())


def test_swagger_ui_loads_the_sidecar_bundle_and_no_validator() -> None:
    html = key_client().get("/api/v1/docs/").content.decode()
    urls = refs(html).urls
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in urls
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css" in urls
    assert '"validatorUrl": null' in html  # Swagger UI's default is an online validator


def test_redoc_loads_the_sidecar_bundle_and_no_web_fonts() -> None:
    html = key_client().get("/api/v1/redoc/").content.decode()
    assert "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in refs(html).urls
    assert "fonts.googleapis.com" not in html
    assert 'Redoc.init("/api/v1/schema/"' in html or 'spec-url="/api/v1/schema/"' in html


@pytest.mark.parametrize("path", DOCS)
def test_the_docs_need_the_read_scope(path: str) -> None:
    assert Client().get(path).status_code in (401, 403)


def test_redoc_is_confined_to_this_node_by_its_content_security_policy() -> None:
    """Redoc's bundle draws Redocly's logo from their CDN: the policy blocks it (and anything
    else from another host) in the browser."""
    policy = key_client().get("/api/v1/redoc/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"
    assert directives["connect-src"] == "'self'"
    assert "http" not in policy  # no other host allowed anywhere
