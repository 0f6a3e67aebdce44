"""Messages never carry a secret: the admin's "doesn't exist" names the id from the URL, and the
message storage (``configsync.web.messages``) masks it, in the page and in the stored cookie."""

from __future__ import annotations

import pytest
from django.contrib.messages import constants
from django.test import Client
from django.utils.html import format_html
from django.utils.safestring import SafeData

from configsync.web.messages import message_masked
from tests.factories import CANARY_SECRET

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "/admin/configsync/systemconfig/{}/change/",
        "/admin/providers/aiproviderconfig/{}/history/",
        "/admin/auth/user/{}/change/",
    ],
    ids=["setting-change", "provider-history", "user-change"],
)
def test_a_secret_in_an_admin_url_is_not_echoed(admin_client: Client, url: str) -> None:
    response = admin_client.get(url.format(CANARY_SECRET))
    assert response.status_code == 302
    assert CANARY_SECRET not in response.cookies.output()
    page = admin_client.get(response["Location"]).content.decode()
    assert "doesn’t exist" in page and "********" in page and CANARY_SECRET not in page


def test_a_message_stays_safe_html_and_plain_text_is_masked() -> None:
    html = format_html('Saved <a href="/x/">{}</a>', CANARY_SECRET)
    masked = message_masked(html)
    assert isinstance(masked, SafeData) and "<a href" in masked and CANARY_SECRET not in masked
    assert message_masked(f"key {CANARY_SECRET}") == "key ********"
    assert message_masked(constants.INFO) == constants.INFO  # not text: left as it is
