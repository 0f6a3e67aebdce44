"""A DEBUG 500 page (HTML and text) shows no secret: frame locals, request data, settings, message.

A real view, reached through the whole middleware stack with ``DEBUG`` on, reads a provider's API
key into local variables and raises. The key is not shaped like a secret (no ``sk-`` prefix), so
only the registry of plaintexts (``configsync.logging``) can mask it; the credential URLs in
settings are never registered, so only the URL rules can.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from providers.models import AIProviderConfig
from providers.services import ai_provider_set
from settings.urls import urlpatterns as project_urlpatterns

KEY = "CANARYdebugKEY0123456789"
CREDENTIAL_SETTINGS = {
    "EXTERNAL_DATABASE_URL": "postgres://app:CANARYextpass@db.example/app",
    "CONFIGSYNC_PEERS": ["cloud=https://peer:CANARYpeerpass@cloud.example"],
    "CONFIGSYNC_DATA_CALLBACK_URL": "https://hooks.example/services/T0/CANARYhooktoken",
    "REDIS_URL": "redis://:CANARYredispass@127.0.0.1:6379/9",
    "CELERY_BROKER_URL": "redis://:CANARYbrokerpass@127.0.0.1:6379/9",
    "CONFIGSYNC_R2_SECRET_ACCESS_KEY": "CANARYr2secret",
    "CONFIGSYNC_R2_ENDPOINT_URL": "https://acct.r2.example/?X-Amz-Signature=CANARYsig",
    "SOME_SERVICE_URL": "https://svc:CANARYgenericpass@svc.example/path?token=CANARYqtoken",
}
pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]


def leaky_view(request: HttpRequest) -> HttpResponse:
    provider = AIProviderConfig.objects.get(name="leaky")
    api_key = provider.api_key
    headers = {"Authorization": "Bearer " + str(api_key)}
    settings_like = {"nested": [api_key], "mode": "visible-marker"}
    note = f"calling with {api_key}"
    assert headers and settings_like and note
    raise RuntimeError(f"upstream refused key {api_key}")


ODD_KEY = "CAN" + "ARY\\odd'quote\"key\u00e9\n7"  # joined: the report shows source lines
"""A stored key whose ``repr`` (how a report shows a frame's variables) and JSON form escape it:
a backslash, both quotes, a non-ASCII letter and a newline."""


def odd_view(request: HttpRequest) -> HttpResponse:
    api_key = AIProviderConfig.objects.get(name="odd").api_key
    held = {"headers": {"x-api-key": api_key}, "as_bytes": str(api_key).encode()}
    body = json.dumps({"k": api_key})
    assert held and body
    raise RuntimeError("upstream refused")


urlpatterns = [path("leak/", leaky_view), path("odd/", odd_view), *project_urlpatterns]


@pytest.fixture
def debug_on(settings: Any) -> None:
    settings.DEBUG = True
    for name, value in CREDENTIAL_SETTINGS.items():
        setattr(settings, name, value)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "redis://:CANARYcachepass@127.0.0.1:6379/9",
        }
    }
    ai_provider_set(name="leaky", kind="openai", api_key=KEY)


@pytest.mark.parametrize("accept", ["text/html", "text/plain"], ids=["html", "text"])
def test_debug_500_page_shows_no_secret(debug_on: None, accept: str) -> None:
    client = Client(raise_request_exception=False)
    response = client.post(
        f"/leak/?api_key=CANARYquery&note={KEY}",
        {"password": "CANARYpost", "comment": f"key is {KEY}"},
        HTTP_ACCEPT=accept,
        HTTP_X_NOTE=f"header {KEY}",
    )
    assert response.status_code == 500
    page = response.content.decode()
    # The report is the technical one (frames, settings; the HTML also has locals).
    assert "leaky_view" in page
    if accept == "text/html":
        assert "settings_like" in page and "visible-marker" in page
    assert "EXTERNAL_DATABASE_URL" in page and "db.example" in page
    assert "CANARY" not in page, [line for line in page.splitlines() if "CANARY" in line][:5]
    assert KEY not in page


def test_filter_masks_credentials_in_setting_urls_keeps_the_rest() -> None:
    from configsync.debug import SecretExceptionReporterFilter

    shown = SecretExceptionReporterFilter().cleanse_setting(
        "CONFIGSYNC_PEERS", ["a=https://user:pw-CANARY@a.example:8443/x?plain=1&key=CANARYk"]
    )
    assert shown == ["a=https://user:********@a.example:8443/x?plain=1&key=********"]
    callback = SecretExceptionReporterFilter().cleanse_setting(
        "CONFIGSYNC_DATA_CALLBACK_URL", "https://hooks.example/services/CANARYhook"
    )
    assert callback == "https://hooks.example/********"


def _fault(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the database went away")


@pytest.mark.parametrize("way", ["admin-html", "admin-text", "api-setting", "api-provider"])
def test_a_secret_being_written_is_masked_in_a_debug_500_before_it_is_stored(
    debug_on: None, monkeypatch: pytest.MonkeyPatch, admin_user: Any, way: str
) -> None:
    """A new secret that faults before reaching its encrypted field (which would register it) is
    registered where it enters (form, serializer): the report's POST data and frame locals mask
    it. Built at run time, so the report's source lines cannot hold it."""
    from django.urls import reverse

    from configsync.admin import SystemConfigAdmin
    from configsync.services.system_config import system_config_set
    from configsync.versioning import record_etag

    secret = "NEWsecret" + "CANARY" + way.replace("-", "")
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    if way.startswith("admin"):
        monkeypatch.setattr(SystemConfigAdmin, "set_service", staticmethod(_fault))
        record = system_config_set(key="DB_PASS", value="old-value-1234", is_sensitive=True)
        response = client.post(
            reverse("admin:configsync_systemconfig_change", args=[record.pk]),
            {
                "value_type": "str",
                "value": secret,
                "is_sensitive": "on",
                "category": "",
                "description": "",
                "version": record_etag(record),
            },
            HTTP_ACCEPT="text/html" if way == "admin-html" else "text/plain",
        )
    elif way == "api-setting":
        monkeypatch.setattr("configsync.api.views.system_config_set", _fault)
        response = client.post(
            "/api/v1/configs/system/",
            {"key": "NEW_PASS", "value": secret, "is_sensitive": True},
            content_type="application/json",
            HTTP_ACCEPT="text/html",
        )
    else:
        monkeypatch.setattr("providers.api.ai_provider_set", _fault)
        response = client.post(
            "/api/v1/configs/ai-providers/",
            {"name": "fresh", "kind": "openai", "api_key": secret},
            content_type="application/json",
            HTTP_ACCEPT="text/html",
        )
    assert response.status_code == 500
    page = response.content.decode()
    assert "the database went away" in page
    assert secret not in page, [line for line in page.splitlines() if secret in line][:3]


def test_a_presented_api_key_is_hidden_in_a_debug_500_of_authentication(
    debug_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault while checking the caller's API key (the database went away) shows no part of
    the key: not in the frame that read the header, not in the library frames below it."""
    from configsync.models import ServiceAPIKey
    from configsync.services.api_keys import api_key_create

    _, key = api_key_create(name="svc", can_write=True)
    monkeypatch.setattr(type(ServiceAPIKey.objects), "get_queryset", _fault)
    client = Client(raise_request_exception=False)
    response = client.get(
        "/api/v1/configs/system/", HTTP_AUTHORIZATION=f"Api-Key {key}", HTTP_ACCEPT="text/html"
    )
    assert response.status_code == 500
    page = response.content.decode()
    assert "the database went away" in page and "authenticate" in page
    secret_part = key.partition(".")[2]
    assert secret_part not in page, [line for line in page.splitlines() if secret_part in line][:3]


@pytest.mark.parametrize("accept", ["text/html", "text/plain"], ids=["html", "text"])
def test_a_secret_with_characters_repr_escapes_is_masked_in_frame_variables(
    debug_on: None, accept: str
) -> None:
    """Frame variables are shown as their ``repr``: a secret holding a backslash, a quote, a
    newline or a non-ASCII letter appears there (and in JSON or bytes it holds) escaped, so
    matching only its raw text missed it."""
    import html

    ai_provider_set(name="odd", kind="anthropic", api_key=ODD_KEY)
    client = Client(raise_request_exception=False)
    response = client.get("/odd/", HTTP_ACCEPT=accept)
    assert response.status_code == 500
    page = html.unescape(response.content.decode())
    assert "odd_view" in page
    for shown in (repr(ODD_KEY)[1:-1], json.dumps(ODD_KEY)[1:-1], repr(ODD_KEY.encode())[2:-1]):
        assert shown not in page, [line for line in page.splitlines() if "odd" in line][:5]
    assert "CANARY" not in page
