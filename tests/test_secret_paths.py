"""Every write path and every outward request, and why none reveals or redirects a stored secret.

The rule (``configsync.services.audit``): a write that would show a stored secret to its caller
(make a sensitive setting plain keeping its value; re-check a kept secret under another type) or
send it to a destination the caller chose (a provider's ``base_url``, ``endpoint`` or ``kind``
while it holds a key) needs the reveal right, or the secret given again in the same write. The
services refuse by default (``allow_reveal=False``); REST passes the reveal scope, the admin the
user's reveal right (active staff), the CLI ``--yes``.

The catalogues below name every field of every write path with the reason it is safe; the
``test_catalogue_*`` tests fail when a field is added without a reason. The other tests prove each
reason that is a refusal.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from configsync.api.serializers import SystemConfigUpdateSerializer
from configsync.cli import config as cli_config
from configsync.forms import SystemConfigAdminForm
from configsync.models import AuditEvent, ReplicatedRecord, SystemConfig
from configsync.replication.services.callbacks import data_callback_payload
from configsync.services.audit import RevealRequired
from configsync.services.system_config import system_config_set
from providers import cli as cli_provider
from providers.client import client_settings, provider_test_connection
from providers.forms import AIProviderConfigAdminForm
from providers.models import AIProviderConfig
from providers.serializers import AIProviderUpdateSerializer
from providers.services import ai_provider_set
from tests.support.admin import provider_form, setting_form
from tests.support.api import key_client
from tests.support.providers import GOOD_KEY, StubProvider

pytestmark = pytest.mark.django_db

SYSTEM = "/api/v1/configs/system/"
PROVIDERS = "/api/v1/configs/ai-providers/"
SECRET = "sk-CANARY-paths-0001"
ATTACKER = "http://127.0.0.1:9/"  # where a hostile caller would like the key to go


# --- catalogues: every field of every write path, with why it is safe -------------------------

SYSTEM_FIELDS = {
    "key": "create only (POST); an existing key is a 400, never overwritten; URL key is read-only",
    "value": "replaces the secret; the old one is never returned (responses mask secrets)",
    "value_type": "retyping a kept secret is an oracle on it: needs reveal or the value again",
    "is_sensitive": "making a kept secret plain reveals it: needs reveal, audited, confirmed",
    "category": "plain metadata; never touches the value",
    "description": "plain metadata; never touches the value",
}
PROVIDER_FIELDS = {
    "kind": "picks the default URL, header and SDK: a destination; needs reveal or the key again",
    "api_key": "write-only: replaces or clears the key; read back masked",
    "base_url": "where the key is sent: needs reveal or the key again",
    "endpoint": "where the key is sent (Azure): needs reveal or the key again",
    "default_model": "a model name; sent to the same host with the key, never elsewhere",
    "organization": "a header sent to the same host; not a destination",
    "api_version": "a query parameter sent to the same host; not a destination",
    "deployment": "a path under the same host (Azure SDK); not a destination",
    "enabled": "a flag; never touches the key",
    "is_default": "a flag; never touches the key",
}
CLI_SET_FLAGS = {
    "json": "output format only",
    "key": "names the setting",
    "value": "the new value: replaces the secret (a new value, never the old one shown)",
    "sensitive": "only raises sensitivity",
    "plain": "lowers sensitivity: needs --yes on a sensitive setting",
    "yes": "the confirmation itself",
    "type": "given with a value, so no kept secret is re-checked",
    "category": "plain metadata",
    "description": "plain metadata",
}
CLI_PROVIDER_FLAGS = {
    **{
        k: v
        for k, v in PROVIDER_FIELDS.items()
        if k not in ("kind", "base_url", "endpoint", "is_default")
    },
    "name": "names the provider",
    "kind": "a destination: needs --yes or --api-key",
    "base_url": "a destination: needs --yes or --api-key",
    "endpoint": "a destination: needs --yes or --api-key",
    "default": "a flag; never touches the key",
    "yes": "the confirmation itself",
    "json": "output format only",
}
OUTWARD_REQUESTS = {
    "provider test-connection (API action)": "GETs the stored destination, which only a caller "
    "holding the reveal right (or re-entering the key) can change: test_redirect_*",
    "provider test-connection (admin action)": "same service and destination as the API action",
    "provider SDK settings (client_settings)": "the same stored destination, guarded alike",
    "data callback (CONFIGSYNC_DATA_CALLBACK_URL)": "URL from the environment (operator only); the "
    "body names the record, never a value: test_data_callback_carries_no_value",
    "peer sync (Peer.base_url, CONFIGSYNC_PEERS)": "editable in the admin only by staff, who hold "
    "the reveal right anyway; the traffic carries ciphertext tokens and an HMAC signature, never "
    "a plaintext or the group secret: test_replicated_form_of_a_secret_is_ciphertext",
}
OTHER_WRITE_PATHS = {
    "replicated changes (sync push / pull)": "accepted only from signed peers holding the group "
    "secret, who can read every token anyway; values travel as ciphertext: "
    "test_unsigned_push_cannot_write",
    ".env bridge": "raises sensitivity, never lowers it (a file value of a sensitive setting stays "
    "sensitive): test_env_bridge_never_lowers_sensitivity",
    "conflict resolution": "picks one of two versions that already existed in the group; a plain "
    "version of a secret exists only after an audited make-plain",
}


def test_catalogue_covers_every_rest_field() -> None:
    writable = {n for n, f in SystemConfigUpdateSerializer().fields.items() if not f.read_only}
    assert writable | {"key"} == set(SYSTEM_FIELDS)
    writable = {n for n, f in AIProviderUpdateSerializer().fields.items() if not f.read_only}
    assert writable == set(PROVIDER_FIELDS)


def test_catalogue_covers_every_admin_form_field() -> None:
    assert set(SystemConfigAdminForm.base_fields) - {"version"} == set(SYSTEM_FIELDS)
    assert set(AIProviderConfigAdminForm.base_fields) - {"version", "name"} == set(PROVIDER_FIELDS)


def _cli_flags(register: Any, *path: str) -> set[str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return {a.dest for a in parser._actions if a.dest != "help"}


def test_catalogue_covers_every_cli_flag() -> None:
    assert _cli_flags(cli_config.register, "set") == set(CLI_SET_FLAGS)
    flags = _cli_flags(cli_provider.register, "provider", "set")
    assert flags == set(CLI_PROVIDER_FLAGS)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def writer() -> APIClient:
    return key_client(write=True, name="writer-no-reveal")


@pytest.fixture
def write_reveal() -> APIClient:
    return key_client(write=True, reveal=True, name="writer-reveal")


@pytest.fixture
def secret() -> SystemConfig:
    return system_config_set(key="DB_PASSWORD", value=SECRET, is_sensitive=True)


@pytest.fixture
def provider(stub_provider: StubProvider) -> AIProviderConfig:
    return ai_provider_set(
        name="openai-main", kind="openai", api_key=GOOD_KEY, base_url=stub_provider.base_url
    )


@pytest.fixture
def staff() -> Client:
    user = get_user_model().objects.create_user("staff", password="unused", is_staff=True)
    user.user_permissions.set(
        __import__("django.contrib.auth.models", fromlist=["Permission"]).Permission.objects.all()
    )
    client = Client()
    client.force_login(user)
    return client


def token_of(record: SystemConfig) -> str:
    return str(SystemConfig.objects.get(pk=record.pk).__dict__["secret_value"])


# --- system settings: REST ------------------------------------------------------------------------

REVEALING_PATCHES = [
    pytest.param({"is_sensitive": False}, "plain", id="is_sensitive-false-keeps-the-secret"),
    pytest.param({"value_type": "int"}, "type", id="value_type-rechecks-the-kept-secret"),
    pytest.param({"value_type": "json", "is_sensitive": False}, "plain", id="both"),
]


@pytest.mark.parametrize(("patch", "word"), REVEALING_PATCHES)
def test_write_key_without_reveal_cannot_reveal_a_secret(
    writer: APIClient, secret: SystemConfig, patch: dict[str, Any], word: str
) -> None:
    before = token_of(secret), ReplicatedRecord.objects.get(natural_key="DB_PASSWORD").seq
    response = writer.patch(f"{SYSTEM}DB_PASSWORD/", patch, format="json")
    assert response.status_code == 403, response.content
    assert "reveal permission" in response.json()["detail"] and word in response.json()["detail"]
    assert SECRET.encode() not in response.content
    record = SystemConfig.objects.get(key="DB_PASSWORD")
    assert record.is_sensitive and record.value == "" and record.value_type == "str"
    assert (token_of(record), ReplicatedRecord.objects.get(natural_key="DB_PASSWORD").seq) == before
    assert not AuditEvent.objects.filter(action="reveal").exists()


@pytest.mark.parametrize("role", ["write_reveal", "admin"])
def test_caller_with_reveal_makes_a_secret_plain_audited(
    role: str, secret: SystemConfig, write_reveal: APIClient, admin_client: Client
) -> None:
    client = write_reveal if role == "write_reveal" else APIClient()
    if role == "admin":
        client.force_login(get_user_model().objects.get(username="admin"))
    response = client.patch(f"{SYSTEM}DB_PASSWORD/", {"is_sensitive": False}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["value"] == SECRET
    event = AuditEvent.objects.filter(action="reveal").get()
    assert event.action == "reveal" and event.natural_key == "DB_PASSWORD"
    assert event.actor.startswith("api-key:writer-reveal" if role == "write_reveal" else "user:")


def test_write_key_may_replace_a_secret_by_a_plain_value(
    writer: APIClient, secret: SystemConfig
) -> None:
    """A new value in the same write replaces the secret: nothing stored is revealed."""
    body = {"is_sensitive": False, "value": "public-now"}
    response = writer.patch(f"{SYSTEM}DB_PASSWORD/", body, format="json")
    assert response.status_code == 200
    assert response.json()["value"] == "public-now"
    assert (
        SECRET.encode() not in response.content
        and not AuditEvent.objects.filter(action="reveal").exists()
    )


@pytest.mark.parametrize(
    "patch",
    [{"category": "db"}, {"description": "the password"}, {"value": "sk-CANARY-rotated"}],
    ids=["category", "description", "value"],
)
def test_harmless_fields_keep_the_secret_masked(
    writer: APIClient, secret: SystemConfig, patch: dict[str, Any]
) -> None:
    response = writer.patch(f"{SYSTEM}DB_PASSWORD/", patch, format="json")
    assert response.status_code == 200
    assert response.json()["value"] == "********" and response.json()["is_sensitive"]
    assert SECRET.encode() not in response.content


@pytest.mark.parametrize("method", ["put", "patch"])
def test_the_mask_read_back_and_sent_again_keeps_the_secret(
    writer: APIClient, secret: SystemConfig, provider: AIProviderConfig, method: str
) -> None:
    """GET, change one field, PUT the body back: its ``value``/``api_key`` is the mask, which
    replaced the stored secret with the literal ``********``. The mask is no value: it keeps."""
    for url, change in (
        (f"{SYSTEM}DB_PASSWORD/", "description"),
        (f"{PROVIDERS}openai-main/", "default_model"),
    ):
        body = writer.get(url).json()
        body[change] = "changed"
        response = getattr(writer, method)(url, body, format="json")
        assert response.status_code == 200, response.content
        assert response.json()[change] == "changed"
    assert SystemConfig.objects.get(key="DB_PASSWORD").secret_value == SECRET
    assert AIProviderConfig.objects.get(name="openai-main").api_key == GOOD_KEY
    # Sent back with the secret made plain, the mask still keeps: that is a reveal, refused.
    body = writer.get(f"{SYSTEM}DB_PASSWORD/").json()
    body["is_sensitive"] = False
    assert getattr(writer, method)(f"{SYSTEM}DB_PASSWORD/", body, format="json").status_code == 403
    assert SystemConfig.objects.get(key="DB_PASSWORD").secret_value == SECRET
    # Nor is the mask the key "entered again": moving the stored key stays refused.
    body = writer.get(f"{PROVIDERS}openai-main/").json()
    body["base_url"] = ATTACKER
    assert (
        getattr(writer, method)(f"{PROVIDERS}openai-main/", body, format="json").status_code == 403
    )
    assert AIProviderConfig.objects.get(name="openai-main").base_url != ATTACKER


def test_create_cannot_overwrite_a_secret(writer: APIClient, secret: SystemConfig) -> None:
    body = {"key": "DB_PASSWORD", "value": "x", "is_sensitive": False}
    assert writer.post(SYSTEM, body, format="json").status_code == 400
    assert SystemConfig.objects.get(key="DB_PASSWORD").is_sensitive


# --- system settings: the service's safe default --------------------------------------------------


def test_service_refuses_by_default(secret: SystemConfig) -> None:
    with pytest.raises(RevealRequired):
        system_config_set(key="DB_PASSWORD", is_sensitive=False)
    with pytest.raises(RevealRequired):
        system_config_set(key="DB_PASSWORD", value_type="int")
    assert SystemConfig.objects.get(key="DB_PASSWORD").is_sensitive
    record = system_config_set(
        key="DB_PASSWORD", is_sensitive=False, allow_reveal=True, actor="test:reveal"
    )
    assert record.value == SECRET
    assert AuditEvent.objects.filter(action="reveal").get().actor == "test:reveal"


def test_a_sensitive_setting_without_a_value_reveals_nothing() -> None:
    system_config_set(key="EMPTY", value="x", is_sensitive=True)
    system_config_set(key="EMPTY", value="")  # str "" is a value; clear it through the model
    SystemConfig.objects.filter(key="EMPTY").update(secret_value=None)
    assert not system_config_set(key="EMPTY", is_sensitive=False).is_sensitive


# --- system settings: admin ----------------------------------------------------------------------


def test_admin_asks_for_confirmation_before_making_a_secret_plain(
    admin_client: Client, secret: SystemConfig
) -> None:
    change = reverse("admin:configsync_systemconfig_change", args=[secret.pk])
    response = admin_client.post(change, setting_form(secret, is_sensitive=None))
    assert response.status_code == 200
    page = response.content.decode()
    assert any(t.name.endswith("make_plain_confirmation.html") for t in response.templates)
    assert "Yes, make it plain" in page and "audit trail" in page and SECRET not in page
    assert SystemConfig.objects.get(key="DB_PASSWORD").is_sensitive
    assert not AuditEvent.objects.filter(action="reveal").exists()

    confirmed = setting_form(secret, is_sensitive=None, _confirm_make_plain="yes")
    response = admin_client.post(change, confirmed)
    assert response.status_code == 302
    record = SystemConfig.objects.get(key="DB_PASSWORD")
    assert not record.is_sensitive and record.value == SECRET
    assert AuditEvent.objects.filter(action="reveal").get().actor.startswith("user:")


def test_admin_replacing_the_value_while_making_plain_needs_no_confirmation(
    admin_client: Client, secret: SystemConfig
) -> None:
    change = reverse("admin:configsync_systemconfig_change", args=[secret.pk])
    response = admin_client.post(change, setting_form(secret, is_sensitive=None, value="open"))
    assert response.status_code == 302
    assert SystemConfig.objects.get(key="DB_PASSWORD").value == "open"
    assert not AuditEvent.objects.filter(action="reveal").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"is_sensitive": None}, "is_sensitive"), ({"value_type": "int"}, "value_type")],
    ids=["make-plain", "retype"],
)
def test_admin_form_without_the_reveal_right_refuses(
    secret: SystemConfig, changes: dict[str, Any], field: str
) -> None:
    """The form's safe default (``may_reveal = False``), as for a user without the reveal right."""
    form = SystemConfigAdminForm(data=setting_form(secret, **changes), instance=secret)
    assert not form.is_valid()
    assert "reveal permission" in str(form.errors[field])


# --- providers: REST, service, test-connection ---------------------------------------------------


REDIRECTS = [
    pytest.param({"base_url": ATTACKER}, "base_url", id="base_url"),
    pytest.param({"kind": "anthropic"}, "kind", id="kind"),
    pytest.param({"kind": "anthropic", "base_url": ATTACKER}, "kind, base_url", id="kind+url"),
]


@pytest.mark.parametrize(("patch", "fields"), REDIRECTS)
def test_redirect_of_a_stored_key_needs_reveal(
    writer: APIClient,
    provider: AIProviderConfig,
    stub_provider: StubProvider,
    patch: dict[str, Any],
    fields: str,
) -> None:
    response = writer.patch(f"{PROVIDERS}openai-main/", patch, format="json")
    assert response.status_code == 403, response.content
    assert f"({fields})" in response.json()["detail"]
    record = AIProviderConfig.objects.get(name="openai-main")
    assert (record.kind, record.base_url) == ("openai", stub_provider.base_url)
    assert client_settings("openai-main")["base_url"] == stub_provider.base_url
    # The connection test still goes where the key was meant to go.
    response = writer.post(f"{PROVIDERS}openai-main/test-connection/")
    assert response.json()["ok"] is True
    assert len(stub_provider.requests) == 1


def test_redirect_of_an_azure_endpoint_needs_reveal(writer: APIClient) -> None:
    ai_provider_set(
        name="azure",
        kind="azure_openai",
        api_key=SECRET,
        endpoint="https://res.openai.azure.com",
        deployment="d",
    )
    response = writer.patch(f"{PROVIDERS}azure/", {"endpoint": ATTACKER}, format="json")
    assert response.status_code == 403
    assert AIProviderConfig.objects.get(name="azure").endpoint == "https://res.openai.azure.com"


def test_redirect_with_the_key_entered_again_is_allowed(
    writer: APIClient, provider: AIProviderConfig, stub_provider: StubProvider
) -> None:
    """Re-entering the key: the caller sends its own key, not the stored one."""
    patch = {"base_url": stub_provider.base_url + "/v2", "api_key": "sk-CANARY-own"}
    assert writer.patch(f"{PROVIDERS}openai-main/", patch, format="json").status_code == 200
    writer.post(f"{PROVIDERS}openai-main/test-connection/")
    sent = stub_provider.requests[-1]["headers"]["Authorization"]
    assert sent == "Bearer sk-CANARY-own" and GOOD_KEY not in str(stub_provider.requests)


def test_redirect_by_a_caller_with_reveal_is_allowed(
    write_reveal: APIClient, provider: AIProviderConfig
) -> None:
    response = write_reveal.patch(f"{PROVIDERS}openai-main/", {"base_url": ATTACKER}, format="json")
    assert response.status_code == 200
    assert AIProviderConfig.objects.get(name="openai-main").base_url == ATTACKER


@pytest.mark.parametrize(
    "patch",
    [{"default_model": "gpt-x"}, {"organization": "org-1"}, {"enabled": False}, {"api_key": ""}],
    ids=["default_model", "organization", "enabled", "clear-key"],
)
def test_fields_that_do_not_move_the_key_need_no_reveal(
    writer: APIClient, provider: AIProviderConfig, patch: dict[str, Any]
) -> None:
    if "api_key" in patch:  # clearing the key leaves nothing to send; openai needs one
        ai_provider_set(name="ollama", kind="ollama", base_url="http://127.0.0.1:11434")
        response = writer.patch(f"{PROVIDERS}ollama/", {"base_url": ATTACKER}, format="json")
    else:
        response = writer.patch(f"{PROVIDERS}openai-main/", patch, format="json")
    assert response.status_code == 200, response.content
    assert GOOD_KEY.encode() not in response.content


def test_provider_service_refuses_by_default(provider: AIProviderConfig) -> None:
    with pytest.raises(RevealRequired):
        ai_provider_set(name="openai-main", base_url=ATTACKER)
    with pytest.raises(RevealRequired):
        ai_provider_set(name="openai-main", kind="google")
    assert ai_provider_set(name="openai-main", base_url=ATTACKER, allow_reveal=True)


def test_admin_test_connection_uses_the_stored_destination(
    staff: Client, provider: AIProviderConfig, stub_provider: StubProvider
) -> None:
    response = staff.post(
        "/admin/providers/aiproviderconfig/",
        {"action": "admin_test_connection", "_selected_action": [provider.pk]},
        follow=True,
    )
    assert "connected" in response.content.decode().lower()
    assert provider_test_connection(name="openai-main").ok
    assert {r["headers"]["Host"] for r in stub_provider.requests} == {
        stub_provider.base_url.removeprefix("http://")
    }


def test_provider_admin_form_without_the_reveal_right_refuses(provider: AIProviderConfig) -> None:
    form = AIProviderConfigAdminForm(
        data=provider_form(provider, base_url=ATTACKER), instance=provider
    )
    assert not form.is_valid() and "reveal permission" in str(form.errors["base_url"])
    form = AIProviderConfigAdminForm(
        data=provider_form(provider, base_url=ATTACKER, api_key="sk-CANARY-own"), instance=provider
    )
    assert form.is_valid(), form.errors


def test_provider_admin_as_staff_may_redirect(staff: Client, provider: AIProviderConfig) -> None:
    """Staff hold the reveal right (they can read every key through the API's session auth)."""
    url = reverse("admin:providers_aiproviderconfig_change", args=[provider.pk])
    response = staff.post(url, provider_form(provider, base_url=ATTACKER))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AIProviderConfig.objects.get(pk=provider.pk).base_url == ATTACKER


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_set_never_lowers_sensitivity_without_plain_and_yes(
    cli: Any, secret: SystemConfig
) -> None:
    assert cli("set", "DB_PASSWORD", "sk-CANARY-next").code == 0
    assert SystemConfig.objects.get(key="DB_PASSWORD").is_sensitive
    result = cli("set", "DB_PASSWORD", "open", "--plain")
    assert result.code == 1 and "--yes" in result.err
    assert SystemConfig.objects.get(key="DB_PASSWORD").is_sensitive
    assert cli("set", "DB_PASSWORD", "open", "--plain", "--yes").code == 0
    assert SystemConfig.objects.get(key="DB_PASSWORD").value == "open"


@pytest.mark.parametrize(
    "args",
    [("--base-url", ATTACKER), ("--kind", "anthropic")],
    ids=["base-url", "kind"],
)
def test_cli_provider_redirect_needs_yes_or_the_key(
    cli: Any, provider: AIProviderConfig, args: tuple[str, ...]
) -> None:
    result = cli("provider", "set", "openai-main", *args)
    assert result.code == 1 and "--yes" in result.err and GOOD_KEY not in result.err
    assert AIProviderConfig.objects.get(name="openai-main").kind == "openai"
    assert cli("provider", "set", "openai-main", *args, "--yes").code == 0


def test_cli_provider_redirect_with_the_key_again(cli: Any, provider: AIProviderConfig) -> None:
    result = cli(
        "provider", "set", "openai-main", "--base-url", ATTACKER, "--api-key", "-", stdin="k"
    )
    assert result.code == 0
    assert AIProviderConfig.objects.get(name="openai-main").base_url == ATTACKER


# --- other write paths and outward requests -------------------------------------------------------


def test_unsigned_push_cannot_write(settings: Any) -> None:
    settings.CONFIGSYNC_SYNC_SECRET = "x" * 32
    response = APIClient().post("/api/v1/sync/push", {"changes": []}, format="json")
    assert response.status_code == 401
    assert "replicated changes (sync push / pull)" in OTHER_WRITE_PATHS


def test_env_bridge_never_lowers_sensitivity(
    secret: SystemConfig, tmp_path: Any, settings: Any
) -> None:
    from configsync.envbridge.service import env_import

    env_file = tmp_path / ".env"
    env_file.write_text("DB_PASSWORD=from-the-file\n")
    settings.CONFIGSYNC_ENV_FILE = str(env_file)
    env_import(path=str(env_file))
    record = SystemConfig.objects.get(key="DB_PASSWORD")
    assert record.is_sensitive and record.value == ""


def test_data_callback_carries_no_value(secret: SystemConfig) -> None:
    body = data_callback_payload(
        model_label="configsync.systemconfig", natural_key="DB_PASSWORD", seq=1, deleted=False
    )
    assert set(body) == {"event", "node_id", "model", "natural_key", "seq", "deleted"}
    assert SECRET not in str(body)


def test_replicated_form_of_a_secret_is_ciphertext(secret: SystemConfig) -> None:
    data = ReplicatedRecord.objects.get(natural_key="DB_PASSWORD").data
    assert SECRET not in str(data) and str(data["secret_value"]).startswith("enc1:")
    assert set(OUTWARD_REQUESTS) and set(OTHER_WRITE_PATHS)
