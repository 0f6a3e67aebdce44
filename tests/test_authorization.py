"""The authorization matrix: every URL pattern x every HTTP method x every role, by real requests.

The URL resolver is walked recursively (the admin, the DRF routers, every app's ``urls``), each
pattern is turned into a concrete URL (its parameters naming records that exist) and requested
with each method by each role through Django's test client. What each role may reach is written
below as data: ``ENDPOINT_CLASSES`` (pattern name -> class, per method where it differs) and
``ALLOWED`` (class -> roles). A pattern with no entry fails
``test_every_url_pattern_is_classified``: a new URL is classified on purpose. The admin's
patterns are class ``admin`` (every admin view is wrapped by ``AdminSite.admin_view``) unless
listed: its login and logout pages, and the pages of records only the engine writes.

"Allowed" means the request got past authentication and authorization: anything but 401, 403
or a redirect to the admin's login page (a 404 for a missing record or a 405 for a method the
view does not take still proves the caller was let in). "Denied" is exactly those three.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern, RoutePattern

from configsync.replication.signing import sign
from configsync.services.api_keys import api_key_create
from configsync.services.system_config import system_config_set
from providers.services import ai_provider_set
from tests.support.conflicts import setting_conflict
from tests.support.quarantine import quarantine_change
from tests.support.replication import REMOTE, SECRET, use_replication_settings

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "read-key", "write-key", "reveal-key", "staff", "non-staff", "peer")
"""read/write/reveal-key: API keys holding that scope (every key holds read); staff: an active
staff superuser's session (the operator); non-staff: an active user's session without staff;
peer: a request signed with the group's sync secret by another node."""

METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")

ALLOWED: dict[str, frozenset[str]] = {
    "open": frozenset(ROLES),
    "login": frozenset(ROLES),
    "read": frozenset({"read-key", "write-key", "reveal-key", "staff"}),
    "write": frozenset({"write-key", "staff"}),
    "reveal": frozenset({"reveal-key", "staff"}),
    "peer": frozenset({"peer"}),
    "admin": frozenset({"staff"}),
    "nobody": frozenset(),
}
"""Endpoint class -> the roles let in. The CONTRACT's open endpoints are health, metrics and the
landing page; the schema and its docs pages need the read scope; the admin's login and logout
pages are open by nature (they are how one becomes staff)."""

SCOPED = {"GET": "read", "HEAD": "read", "OPTIONS": "read", "*": "write"}
"""The API's default (``HasScope``): safe methods need read, the others write."""

READ_ONLY_IN_ADMIN = {"POST": "nobody", "*": "admin"}
"""An admin page that shows a record nobody may change there (its POST is refused, even to a
superuser: the record is written only by the engine)."""

ENDPOINT_CLASSES: dict[str, str | dict[str, str]] = {
    "landing": "open",
    "metrics": "open",
    "health": "open",
    "api-schema": "read",
    "api-docs": "read",
    "api-redoc": "read",
    "audit-list": "reveal",
    "sync-status": SCOPED,
    "sync-trigger": SCOPED,
    "sync-strategies": SCOPED,
    "sync-conflicts": SCOPED,
    "sync-conflict-resolve": SCOPED,
    "sync-quarantine": SCOPED,
    "sync-quarantine-retry": SCOPED,
    "sync-quarantine-drop": SCOPED,
    "sync-changes": "peer",
    "sync-digest": "peer",
    "sync-push": "peer",
    "sync-log": "peer",
    "system-config-list": SCOPED,
    "system-config-detail": SCOPED,
    "system-config-history": SCOPED,
    "system-config-rollback": SCOPED,
    "ai-provider-list": SCOPED,
    "ai-provider-detail": SCOPED,
    "ai-provider-history": SCOPED,
    "ai-provider-rollback": SCOPED,
    "ai-provider-test-connection": "write",
    "admin:login": "login",
    "admin:logout": "login",
    # No ModelAdmin declares autocomplete_fields: the admin refuses every autocomplete query
    # (its other methods are a 405 past the staff check).
    "admin:autocomplete": {"GET": "nobody", "HEAD": "nobody", "*": "admin"},
    # Records only the engine writes: no add, no delete, change pages are read-only.
    "admin:configsync_nodeidentity_add": "nobody",
    "admin:configsync_nodeidentity_delete": "nobody",
    "admin:configsync_quarantinedchange_add": "nobody",
    "admin:configsync_quarantinedchange_change": READ_ONLY_IN_ADMIN,
    "admin:configsync_conflict_add": "nobody",
    "admin:configsync_syncrun_add": "nobody",
    "admin:configsync_syncrun_change": READ_ONLY_IN_ADMIN,
    "admin:configsync_auditevent_add": "nobody",
    "admin:configsync_auditevent_delete": "nobody",
    "admin:configsync_auditevent_change": READ_ONLY_IN_ADMIN,
}
ADMIN_NAMESPACE = "admin"
"""Every other pattern of the admin site (named or not) is class ``admin``."""


@dataclass(frozen=True)
class Endpoint:
    label: str  # the pattern's namespaced name, or its pattern text when it has none
    pattern: str
    parameters: tuple[str, ...]
    namespace: str

    def endpoint_class(self, method: str) -> str | None:
        entry = ENDPOINT_CLASSES.get(self.label)
        if entry is None:
            return "admin" if self.namespace == ADMIN_NAMESPACE else None
        if isinstance(entry, str):
            return entry
        return entry.get(method, entry["*"])


def _parameters(pattern: Any) -> tuple[str, ...]:
    if isinstance(pattern, RoutePattern):
        return tuple(pattern.converters)
    if isinstance(pattern, RegexPattern):
        return tuple(pattern.regex.groupindex)
    return ()


def _walk(
    resolver: URLResolver, prefix: str = "", namespace: str = "", params: tuple[str, ...] = ()
) -> Iterator[Endpoint]:
    for entry in resolver.url_patterns:
        text = prefix + str(entry.pattern)
        found = params + _parameters(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = ":".join(n for n in (namespace, entry.namespace or "") if n)
            yield from _walk(entry, text, inner, found)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield Endpoint(label=name or text, pattern=text, parameters=found, namespace=namespace)


def endpoints() -> list[Endpoint]:
    return list(_walk(get_resolver()))


# --- the scene: records every parameter can name ---------------------------------------------


@dataclass
class Scene:
    kwargs: dict[str, str]


@pytest.fixture
def scene(settings: Any, stub_provider: Any) -> Scene:
    from django.contrib.contenttypes.models import ContentType

    from configsync.models import SystemConfig

    use_replication_settings(settings)
    # Declared with a default, so the admin's "reset to default" page applies to it.
    settings.CONFIGSYNC_SCHEMA = {
        "AUTHZ_SETTING": {"type": "str", "default": "x", "sensitive": True}
    }
    system_config_set(key="AUTHZ_SETTING", value="sk-CANARY-authz-0001", is_sensitive=True)
    ai_provider_set(
        name="authz-provider",
        kind="openai",
        api_key="sk-CANARY-authz-0002",
        base_url=stub_provider.base_url,
    )
    conflict = setting_conflict("AUTHZ_CONFLICT", local="a", remote="b")
    quarantined = quarantine_change("AUTHZ_QUARANTINED", "sk-CANARY-authz-0003")
    setting = SystemConfig.objects.get(key="AUTHZ_SETTING")
    return Scene(
        kwargs={
            "key": "AUTHZ_SETTING",
            "name": "authz-provider",
            "pk": str(conflict.pk),
            "quarantine_pk": str(quarantined.pk),
            "object_id": str(setting.pk),
            "content_type_id": str(ContentType.objects.get_for_model(SystemConfig).pk),
            "app_label": "configsync",
            "url": "no-such-page/",
            "number": "1",
            "id": "1",
        }
    )


def concrete_url(endpoint: Endpoint, scene: Scene) -> str:
    kwargs = {name: scene.kwargs[name] for name in endpoint.parameters}
    if endpoint.label.startswith("sync-quarantine-"):
        kwargs["pk"] = scene.kwargs["quarantine_pk"]
    if endpoint.label != endpoint.pattern:
        return reverse(endpoint.label, kwargs=kwargs)
    # Unnamed (the admin's object redirect and catch-all): fill the pattern's text.
    text = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: kwargs[m.group(1)], endpoint.pattern)
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: kwargs[m.group(1)], text)
    return "/" + text.replace("^", "").replace("$", "")


# --- the roles ---------------------------------------------------------------------------------


Caller = Callable[[str, str], Any]


def _key_headers(**scopes: bool) -> dict[str, str]:
    _, key = api_key_create(name="authz-" + ("-".join(sorted(scopes)) or "read"), **scopes)
    return {"HTTP_AUTHORIZATION": f"Api-Key {key}"}


def caller_for(role: str) -> Caller:
    """``call(method, url)`` as ``role``; a body of ``{}`` where the method takes one."""
    client = Client()
    headers: dict[str, str] = {}
    user = None
    if role == "read-key":
        headers = _key_headers()
    elif role == "write-key":
        headers = _key_headers(can_write=True)
    elif role == "reveal-key":
        headers = _key_headers(can_reveal=True)
    elif role in ("staff", "non-staff"):
        staff = role == "staff"
        user = get_user_model().objects.create_user(
            username=f"authz-{role}", password="unused-in-tests", is_staff=staff, is_superuser=staff
        )

    if user is not None:
        client.force_login(user)
    logout = reverse("admin:logout")

    def call(method: str, url: str) -> Any:
        body = b"{}" if method in ("POST", "PUT", "PATCH") else b""
        extra = dict(headers)
        if role == "peer":
            signed = sign(secret=SECRET, method=method, path=url, body=body, node=REMOTE)
            extra.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.items()})
        response = client.generic(method, url, body, content_type="application/json", **extra)
        if user is not None and url == logout:
            client.force_login(user)  # a POST there ended the session
        return response

    return call


def denied(response: Any) -> bool:
    if response.status_code in (401, 403):
        return True
    if response.status_code in (301, 302, 303, 307, 308):
        return urlsplit(response["Location"]).path == reverse("admin:login")
    return False


# --- the tests ---------------------------------------------------------------------------------


def test_every_url_pattern_is_classified() -> None:
    found = endpoints()
    unclassified = [e.label for e in found if any(e.endpoint_class(m) is None for m in METHODS)]
    assert not unclassified, f"classify these URL patterns in ENDPOINT_CLASSES: {unclassified}"
    labels = {e.label for e in found}
    stale = sorted(set(ENDPOINT_CLASSES) - labels)
    assert not stale, f"ENDPOINT_CLASSES names patterns that no longer exist: {stale}"
    assert sum(e.namespace == ADMIN_NAMESPACE for e in found) > 20  # the admin was walked


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_what_the_matrix_allows(role: str, scene: Scene) -> None:
    call = caller_for(role)
    before = records_state()
    wrong = []
    for endpoint in endpoints():
        url = concrete_url(endpoint, scene)
        for method in METHODS:
            expected = role in ALLOWED[endpoint.endpoint_class(method) or ""]
            response = call(method, url)
            if response.status_code >= 500:
                wrong.append(f"{method} {url}: {response.status_code} (server error)")
            elif denied(response) == expected:
                verdict = "denied" if expected else "let in"
                wrong.append(
                    f"{method} {url} ({endpoint.label}): {verdict}, {response.status_code}"
                )
    assert not wrong, f"{role}:\n" + "\n".join(wrong)
    if role not in ALLOWED["write"]:
        # Refused before anything ran: no record, conflict or quarantined change changed.
        assert records_state() == before, role


def records_state() -> list[Any]:
    from configsync.models import Conflict, QuarantinedChange, ReplicatedRecord

    return [
        sorted(ReplicatedRecord.objects.values_list("model_label", "natural_key", "hlc")),
        sorted(Conflict.objects.values_list("pk", "status")),
        sorted(QuarantinedChange.objects.values_list("pk", "status", "attempts")),
    ]


def test_anonymous_admin_pages_redirect_to_login_and_api_answers_401(scene: Scene) -> None:
    """The refusal's form: the admin's HTML redirects to its login page, the API says 401."""
    client = Client()
    admin_page = client.get(reverse("admin:configsync_systemconfig_changelist"))
    assert admin_page.status_code == 302
    assert urlsplit(admin_page["Location"]).path == reverse("admin:login")
    for name in ("system-config-list", "sync-status", "audit-list", "sync-push", "api-schema"):
        response = client.get(reverse(name))
        assert response.status_code == 401, (name, response.status_code)
    health = json.loads(client.get(reverse("health")).content)
    assert health["status"] in {"ok", "degraded", "error"}
