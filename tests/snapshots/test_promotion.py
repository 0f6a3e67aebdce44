"""``configsync promote``: no secret and no identity leaves, the rules table, its setting and
check, the modes, and a promoted snapshot restoring on a node with other keys and another group."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from django.contrib.auth import get_user_model

from configsync.crypto.keyring import generate_key, get_keyring
from configsync.models import ReplicatedRecord, SystemConfig
from configsync.services.system_config import system_config_set
from configsync.snapshots.checks import check_promotion_rules
from configsync.snapshots.document import document_loads
from configsync.snapshots.services import snapshot_load, snapshot_restore
from providers.models import AIProviderConfig
from providers.services import ai_provider_set
from tests.support.cli import CliResult
from tests.testapp.models import Project, Template

pytestmark = pytest.mark.django_db

Cli = Callable[..., CliResult]
EMAIL = "Alice.Canary@Example.com"
USERNAME = "alice.canary"
PASSWORD = "sk-CANARY-user-password"
TYPED_SECRET = "sk-CANARY-4242"


def encoded_forms(text: str) -> Iterator[str]:
    """``text`` as it could appear: plain, URL-encoded, and base64 (standard and URL-safe) at
    every alignment (the middle of the encoding, which does not depend on the bytes around)."""
    yield text
    yield quote(text, safe="")
    yield quote_plus(text)
    raw = text.encode()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode().rstrip("=")
            middle = encoded[4 if offset else 0 : -4]
            if len(middle) >= 8:
                yield middle


def assert_absent(blob: str, *secrets: str) -> None:
    for secret in secrets:
        for form in encoded_forms(secret):
            assert form not in blob, f"a form of {secret[:6]}... is in the file"
        assert secret.lower() not in blob.lower()


@pytest.fixture
def production(canary: str, tmp_path: Path, cli: Cli) -> Path:
    """A production node's data, and its snapshot file."""
    system_config_set(key="DB_PASSWORD", value=canary, is_sensitive=True)
    system_config_set(key="SECRET_PORT", value="4242", value_type="int", is_sensitive=True)
    system_config_set(
        key="SECRET_URL",
        value=f"https://u:{TYPED_SECRET}@db.example/",
        value_type="url",
        is_sensitive=True,
    )
    system_config_set(key="SITE_NAME", value="production")
    ai_provider_set(name="openai-main", kind="openai", api_key=canary)
    user = get_user_model().objects.create_user(
        username=USERNAME, email=EMAIL, password=PASSWORD, first_name="Alice", last_name="Canary"
    )
    assert user.pk
    Project.objects.create(slug="website", name="Website")
    Template.objects.create(slug="welcome", body="Hello")
    path = tmp_path / "production.json"
    assert cli("snapshot", "--output", str(path)).code == 0
    return path


def promote(cli: Cli, source: Path, mode: str, output: Path) -> dict[str, Any]:
    result = cli("promote", "--from", str(source), "--mode", mode, "--output", str(output))
    assert result.code == 0, result.err
    return document_loads(output.read_bytes())


def test_a_promoted_snapshot_holds_no_secret_no_email_no_username_and_no_ciphertext(
    cli: Cli, production: Path, tmp_path: Path, canary: str
) -> None:
    out = tmp_path / "staging.json"
    document = promote(cli, production, "full", out)
    blob = out.read_text()

    assert_absent(blob, canary, EMAIL, USERNAME, PASSWORD, TYPED_SECRET)
    assert "enc1:" not in blob
    assert document["promoted"] is True and document["group_id"] is None
    assert document["key_ids"] == []
    users = [r for r in document["records"] if r["model"] == "auth.user"]
    (alice,) = [u for u in users if u["data"]["first_name"] != ""]
    email_hash = hashlib.sha256(EMAIL.lower().encode()).hexdigest()
    assert alice["data"]["email"] == f"{email_hash}@anonymized.local"
    assert (
        alice["key"] == alice["data"]["username"] == hashlib.sha256(USERNAME.encode()).hexdigest()
    )
    assert alice["data"]["password"] is None
    assert alice["placeholders"]["password"].startswith("!")  # make_password(None): unusable
    assert (alice["data"]["first_name"], alice["data"]["last_name"]) != ("Alice", "Canary")
    settings_records = {
        r["key"]: r for r in document["records"] if r["model"].startswith("configsync")
    }
    assert settings_records["DB_PASSWORD"]["placeholders"] == {
        "secret_value": "configsync-placeholder"
    }
    assert settings_records["SECRET_PORT"]["placeholders"] == {"secret_value": "0"}
    assert settings_records["SITE_NAME"]["data"]["value"] == "production"
    assert "placeholders" not in settings_records["SITE_NAME"]


def test_names_are_deterministic_per_person(cli: Cli, production: Path, tmp_path: Path) -> None:
    first = promote(cli, production, "full", tmp_path / "one.json")
    second = promote(cli, production, "full", tmp_path / "two.json")

    def names(doc: dict[str, Any]) -> list[tuple[str, str]]:
        return [
            (r["data"]["first_name"], r["data"]["last_name"])
            for r in doc["records"]
            if r["model"] == "auth.user"
        ]

    assert names(first) == names(second)
    assert any(first_name for first_name, _ in names(first))


def test_content_only_keeps_only_content_types(cli: Cli, production: Path, tmp_path: Path) -> None:
    document = promote(cli, production, "content-only", tmp_path / "content.json")

    assert document["data_types"] == ["projects", "templates"]
    assert {r["model"] for r in document["records"]} == {"testapp.project", "testapp.template"}


def test_a_sensitive_only_type_is_excluded_and_removed_secrets_drop_their_records(
    cli: Cli, production: Path, tmp_path: Path, settings: Any
) -> None:
    settings.CONFIGSYNC_PROMOTION_RULES = {
        "templates": {"sensitive_only": True},
        "ai_providers": {"secrets": "remove"},
    }
    full = promote(cli, production, "full", tmp_path / "full.json")

    assert "templates" not in full["data_types"]
    models = {r["model"] for r in full["records"]}
    assert "testapp.template" not in models
    assert "providers.aiproviderconfig" not in models  # its only provider holds a key
    assert "testapp.project" in models

    explained = json.loads(cli("promote", "--explain", "--json").out)
    rows = {row["data_type"]: row for row in explained}
    assert rows["templates"]["sensitive_only"] is True and rows["templates"]["source"] == "setting"
    assert rows["users"]["fields"]["email"] == "email"


def test_explain_prints_every_data_type(cli: Cli) -> None:
    result = cli("promote", "--explain")

    assert result.code == 0, result.err
    for data_type in ("system_config", "ai_providers", "users", "projects", "templates"):
        assert any(line.startswith(data_type) for line in result.out.splitlines())


@pytest.mark.parametrize("mode", ["partial", "FULL", ""], ids=["partial", "upper", "empty"])
def test_an_unknown_mode_is_refused_and_nothing_is_written(
    mode: str, cli: Cli, production: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never.json"
    result = cli("promote", "--from", str(production), "--mode", mode, "--output", str(out))

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert ("unknown promotion mode" in result.err) or ("needs --mode" in result.err)
    assert not out.exists()
    assert not list(tmp_path.glob(".never.json*"))


def test_a_damaged_source_is_refused(cli: Cli, production: Path, tmp_path: Path) -> None:
    production.write_text(production.read_text().replace('"production"', '"tampered"'))
    out = tmp_path / "never.json"

    result = cli("promote", "--from", str(production), "--mode", "full", "--output", str(out))

    assert result.code == 1 and "checksum" in result.err
    assert not out.exists()


BAD_RULES: dict[str, Any] = {
    "unknown-type": {"nonsense": {"content": True}},
    "unknown-key": {"users": {"colour": "red"}},
    "bad-flag": {"projects": {"content": "yes"}},
    "bad-secrets": {"projects": {"secrets": "shred"}},
    "bad-transform": {"users": {"fields": {"email": "rot13"}}},
    "unknown-field": {"users": {"fields": {"shoe_size": "hash"}}},
    "not-a-dict": ["users"],
    # Restore takes placeholders for secret fields only: such a snapshot could never restore.
    "password-on-a-plain-field": {"users": {"fields": {"first_name": "unusable_password"}}},
}


@pytest.mark.parametrize("case", sorted(BAD_RULES), ids=sorted(BAD_RULES))
def test_bad_promotion_rules_fail_check_e060_and_promote_refuses(
    case: str, cli: Cli, production: Path, tmp_path: Path, settings: Any
) -> None:
    settings.CONFIGSYNC_PROMOTION_RULES = BAD_RULES[case]

    errors = check_promotion_rules()
    assert errors and {e.id for e in errors} == {"configsync.E060"}
    out = tmp_path / "never.json"
    result = cli("promote", "--from", str(production), "--mode", "full", "--output", str(out))
    assert result.code == 1 and "CONFIGSYNC_PROMOTION_RULES" in result.err
    assert not out.exists()


def test_the_default_rules_pass_the_check() -> None:
    assert check_promotion_rules() == []


def test_a_promoted_snapshot_restores_under_other_keys_and_another_group(
    cli: Cli, production: Path, tmp_path: Path, settings: Any, canary: str
) -> None:
    promoted = tmp_path / "staging.json"
    promote(cli, production, "full", promoted)
    staging_key = generate_key()
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [staging_key]
    settings.CONFIGSYNC_GROUP_ID = "staging"
    staging_admin = get_user_model().objects.create_superuser("staging-admin", "", "pw-staging-1")

    report = snapshot_restore(document=snapshot_load(source=str(promoted)))

    assert report.promoted and report.count("added") >= 1
    kid = get_keyring().primary.kid
    secret = SystemConfig.objects.get(key="DB_PASSWORD")
    assert secret.secret_value == "configsync-placeholder"
    assert str(secret.__dict__["secret_value"]).split(":")[1] == kid
    assert SystemConfig.objects.get(key="SECRET_PORT").typed_value() == 0
    assert SystemConfig.objects.get(key="SECRET_URL").secret_value == "https://placeholder.invalid/"
    assert SystemConfig.objects.get(key="SITE_NAME").value == "production"
    assert AIProviderConfig.objects.get(name="openai-main").api_key == "configsync-placeholder"
    email_hash = hashlib.sha256(EMAIL.lower().encode()).hexdigest()
    anonymous = get_user_model().objects.get(email=f"{email_hash}@anonymized.local")
    assert not anonymous.has_usable_password()
    # A promoted restore never removes this node's own users (its operators keep their login).
    staging_admin.refresh_from_db()
    assert staging_admin.check_password("pw-staging-1")
    # Nothing of production's secrets is anywhere in the feed now.
    feed = json.dumps(list(ReplicatedRecord.objects.values_list("data", flat=True)))
    assert canary not in feed


def test_credentials_in_a_provider_url_are_not_promoted(
    cli: Cli, tmp_path: Path, canary: str
) -> None:
    """A provider's base URL is a plain field, yet a proxy's often carries credentials (user
    info, a query parameter): they stay in production, the rest of the URL goes down."""
    url_password, url_query = "sk-CANARY-url-password", "sk-CANARY-url-query"
    ai_provider_set(
        name="proxied",
        kind="openai",
        api_key=canary,
        base_url=f"https://svc:{url_password}@llm-proxy.example.com/v1?api_key={url_query}#x",
    )
    ai_provider_set(name="local", kind="ollama", base_url="http://127.0.0.1:11434")
    source = tmp_path / "production.json"
    assert cli("snapshot", "--output", str(source)).code == 0
    out = tmp_path / "staging.json"

    document = promote(cli, source, "full", out)

    assert_absent(out.read_text(), canary, url_password, url_query, "svc:")
    providers = {r["key"]: r["data"] for r in document["records"] if r["model"].startswith("prov")}
    assert providers["proxied"]["base_url"] == "https://llm-proxy.example.com/v1"
    assert providers["local"]["base_url"] == "http://127.0.0.1:11434"
    assert "base_url=url_credentials" in cli("promote", "--explain").out


def test_restoring_a_promoted_snapshot_again_writes_nothing(
    cli: Cli, production: Path, tmp_path: Path, settings: Any
) -> None:
    promoted = tmp_path / "staging.json"
    promote(cli, production, "full", promoted)
    settings.CONFIGSYNC_ENCRYPTION_KEYS = [generate_key()]
    settings.CONFIGSYNC_GROUP_ID = "staging"
    document = snapshot_load(source=str(promoted))
    first = snapshot_restore(document=document)
    assert first.count("added") >= 1
    feed = list(ReplicatedRecord.objects.order_by("pk").values_list("pk", "seq", "deleted"))

    again = snapshot_restore(document=document)

    # Placeholders already in place (a text, an unusable password) are no change: a restore
    # run twice (a retried deploy step) adds no version and nothing to replicate.
    assert [(i.model, i.key, i.fields) for i in again.items] == []
    assert again.unchanged == first.count("added") + first.count("changed") + first.unchanged
    assert list(ReplicatedRecord.objects.order_by("pk").values_list("pk", "seq", "deleted")) == feed
