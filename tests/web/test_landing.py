"""``/``: the landing page names this node and links to everything, signed out, and shows no
secret."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from configsync.models import NodeIdentity
from configsync.services.system_config import system_config_set
from tests.factories import CANARY_SECRET

pytestmark = pytest.mark.django_db


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(str(value) for name, value in attrs if name == "href" and value)


def links(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.hrefs


def test_signed_out_it_names_the_node_and_mode_and_links_everywhere() -> None:
    stored = NodeIdentity.objects.get().node_id
    response = Client().get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert f'<dd id="node-id">{stored}</dd>' in html
    assert '<dd id="deployment-mode">LOCAL_ONLY</dd>' in html
    assert set(links(html)) >= {
        "/admin/",
        "/api/v1/docs/",
        "/api/v1/redoc/",
        "/api/v1/schema/",
        "/api/v1/health",
        "/api/v1/sync/status",
        "/metrics",
    }
    assert "createsuperuser" in html  # how to get the first account


@override_settings(CONFIGSYNC_NODE_ID="node-from-settings", CONFIGSYNC_DEPLOYMENT_MODE="LOCAL_R2")
def test_the_configured_id_and_mode_are_shown() -> None:
    html = Client().get("/").content.decode()
    assert '<dd id="node-id">node-from-settings</dd>' in html
    assert '<dd id="deployment-mode">LOCAL_R2</dd>' in html


def test_every_link_leads_somewhere_for_an_admin() -> None:
    admin = get_user_model().objects.create_superuser("root", password="unused-in-tests")
    client = Client()
    client.force_login(admin)
    html = client.get("/").content.decode()
    assert "createsuperuser" not in html  # signed in: no first-account hint
    for href in links(html):
        response = client.get(href)
        # health may answer 503 with no broker running here; every other page answers 200.
        assert response.status_code in ((200, 503) if href == "/api/v1/health" else (200,)), href


def test_it_never_shows_a_secret() -> None:
    system_config_set(key="OPENAI_KEY", value=CANARY_SECRET, is_sensitive=True)
    with override_settings(
        CONFIGSYNC_SYNC_SECRET=f"{CANARY_SECRET}-sync",
        CONFIGSYNC_PEERS=["cloud=https://user:pw-CANARY@cloud.example"],
    ):
        html = Client().get("/").content.decode()
    assert "CANARY" not in html
    assert "cloud.example" not in html  # no peer URL either


def test_without_a_stored_identity_it_says_to_migrate() -> None:
    NodeIdentity.objects.all().delete()
    response = Client().get("/")
    assert response.status_code == 200
    assert "python manage.py migrate" in response.content.decode()


def test_only_get_and_head() -> None:
    assert Client().head("/").status_code == 200
    assert Client().post("/").status_code == 405


def test_the_version_is_shown_to_staff_only() -> None:
    from importlib import metadata

    version = metadata.version("configsync")
    assert 'id="version"' not in Client().get("/").content.decode()
    staff = get_user_model().objects.create_user("staffer", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert f'<dd id="version">{version}</dd>' in client.get("/").content.decode()
