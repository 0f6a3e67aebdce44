"""AIProviderConfig: each kind validates its own fields; nothing invalid is saved."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from providers import get_ai_config
from providers.models import AIProviderConfig
from providers.services import ai_provider_delete, ai_provider_set

pytestmark = pytest.mark.django_db

AZURE = {
    "api_key": "sk-CANARY-azure",
    "endpoint": "https://example.openai.azure.com",
    "api_version": "2024-10-21",
    "deployment": "gpt-4o",
}


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("openai", {"api_key": "sk-CANARY-o", "organization": "org-123"}),
        ("anthropic", {"api_key": "sk-CANARY-a"}),
        ("google", {"api_key": "sk-CANARY-g"}),
        ("azure_openai", AZURE),
        ("ollama", {}),
    ],
)
def test_each_kind_saves_with_its_fields_and_defaults(kind: str, options: dict) -> None:
    record = ai_provider_set(name=f"{kind.replace('_', '-')}-1", kind=kind, **options)
    assert record.kind == kind
    config = get_ai_config(record.name)
    for field, value in options.items():
        assert config[field] == value
    if kind == "ollama":
        assert config["base_url"] == "http://127.0.0.1:11434" and config["api_key"] is None


@pytest.mark.parametrize(
    ("kind", "options", "field"),
    [
        ("openai", {}, "api_key"),
        ("anthropic", {"api_key": "sk-CANARY-a", "organization": "org"}, "organization"),
        ("azure_openai", {**AZURE, "endpoint": ""}, "endpoint"),
        ("azure_openai", {**AZURE, "deployment": ""}, "deployment"),
        ("ollama", {"api_key": "sk-CANARY-no"}, "api_key"),
        ("openai", {"api_key": "sk-CANARY-o", "base_url": "not a url"}, "base_url"),
        ("azure_openai", {**AZURE, "endpoint": "ftp://example.com"}, "endpoint"),
        ("mistral", {"api_key": "sk-CANARY-m"}, "kind"),
        (None, {"api_key": "sk-CANARY-m"}, "kind"),
    ],
)
def test_invalid_provider_is_refused_and_nothing_saved(
    kind: str | None, options: dict, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ai_provider_set(name="bad", kind=kind, **options)
    assert field in caught.value.message_dict
    assert "sk-CANARY" not in str(caught.value)
    assert not AIProviderConfig.objects.exists()


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        ai_provider_set(name="x", kind="openai", api_key="sk-CANARY-1", temperature="1")
    assert "temperature" in caught.value.message_dict


def test_update_keeps_the_key_and_only_one_default(canary: str) -> None:
    ai_provider_set(name="first", kind="openai", api_key=canary, is_default=True)
    ai_provider_set(name="second", kind="anthropic", api_key="sk-CANARY-b", is_default=True)
    ai_provider_set(name="first", default_model="gpt-4.1")
    first = AIProviderConfig.objects.get(name="first")
    assert first.api_key == canary and first.default_model == "gpt-4.1"
    assert list(AIProviderConfig.objects.filter(is_default=True)) == [
        AIProviderConfig.objects.get(name="second")
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM providers_aiproviderconfig")
        assert all(canary not in row[0] for row in cursor.fetchall())


def test_clearing_a_required_key_is_refused(canary: str) -> None:
    ai_provider_set(name="main", kind="openai", api_key=canary)
    with pytest.raises(ValidationError):
        ai_provider_set(name="main", api_key="")
    assert AIProviderConfig.objects.get(name="main").api_key == canary
    ai_provider_delete(name="main")
    assert not AIProviderConfig.objects.exists()


def test_every_field_has_verbose_name_and_help_text() -> None:
    from configsync.models import SystemConfig

    for model in (AIProviderConfig, SystemConfig):
        for field in model._meta.concrete_fields:
            if field.primary_key:
                continue
            assert field.verbose_name, field
            if field.name not in {"created_at", "updated_at"}:
                assert field.help_text, f"{model.__name__}.{field.name} has no help_text"
