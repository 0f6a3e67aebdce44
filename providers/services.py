"""Writes of ``AIProviderConfig``. Replication, caches and audit hook in by signals."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from configsync.exceptions import ConfigKeyError
from configsync.services.audit import RevealRequired
from configsync.services.retry import retry_on_concurrent_create
from configsync.services.system_config import ALREADY_EXISTS
from configsync.validation import validate_storable_texts
from providers.models import AIProviderConfig
from providers.registry import OPTION_FIELDS, kind_get

_KEEP: Any = None

DESTINATION_FIELDS = ("kind", "base_url", "endpoint")
"""Fields that decide where the stored API key is sent: the URL fields, and the kind, which picks
the default URL, the header and the SDK (``providers.registry``)."""

DISABLED_DEFAULT = (
    "A disabled provider cannot be the default. Enable it, or make another provider the "
    "default first."
)

REDIRECT_NEEDS_REVEAL = (
    "Changing where a provider's stored API key is sent ({fields}) needs the reveal permission, "
    "or give the API key again in the same write. Nothing was changed."
)


@retry_on_concurrent_create
def ai_provider_set(
    *,
    name: str,
    kind: str | None = None,
    enabled: bool | None = None,
    is_default: bool | None = None,
    create_only: bool = False,
    allow_reveal: bool = False,
    **options: str | None,
) -> AIProviderConfig:
    """Create or update provider ``name``; return it.

    ``options`` are the fields of ``providers.registry.OPTION_FIELDS`` (``api_key``, ``base_url``,
    ...). ``None`` keeps the current value, ``""`` clears it; a kind's defaults fill fields left
    empty on create. Making one provider the default clears the flag on the others. Raises
    ``ValidationError`` (nothing saved) for an unknown kind, an unknown option or a field the kind
    requires or does not use, and for a provider that would be both disabled and the default
    (``is_default``: :data:`DISABLED_DEFAULT`; disabling the default provider is refused until
    another one is the default); messages never contain the API key. With ``create_only`` an
    existing ``name`` is a ``ValidationError`` instead of an update. Atomic; when another
    transaction creates ``name`` (or makes another provider the default) between our read and our
    write, the call is retried once (``configsync.services.retry``).

    Redirects: while the record holds an API key, changing a field of ``DESTINATION_FIELDS``
    would make the connection test and every SDK client built from ``client_settings`` send that
    key to a destination the caller chose. Unless the same call gives ``api_key`` (a new key, or
    ``""`` to clear it) or passes ``allow_reveal`` (only callers holding the reveal right do), it
    raises :class:`~configsync.services.audit.RevealRequired` and nothing is saved.
    """
    unknown = sorted(set(options) - set(OPTION_FIELDS))
    if unknown:
        raise ValidationError({field: "Unknown provider option." for field in unknown})
    validate_storable_texts(name=name, kind=kind, **options)
    record = AIProviderConfig.objects.select_for_update().filter(name=name).first()
    if record is not None and create_only:
        raise ValidationError({"name": ALREADY_EXISTS})
    creating = record is None
    if record is None:
        if not kind:
            raise ValidationError({"kind": "Required when creating a provider."})
        record = AIProviderConfig(name=name)
    guarded = (
        not creating and record.has_api_key and options.get("api_key") is None and not allow_reveal
    )
    destination = {field: getattr(record, field) for field in DESTINATION_FIELDS}
    if kind is not None:
        record.kind = kind
    spec = kind_get(record.kind)
    for field, value in options.items():
        if value is not None:
            setattr(record, field, value)
    if guarded:
        moved = [f for f in DESTINATION_FIELDS if getattr(record, f) != destination[f]]
        if moved:
            raise RevealRequired(REDIRECT_NEEDS_REVEAL.format(fields=", ".join(moved)))
    if creating:
        for field, default in spec.defaults.items():
            if not getattr(record, field):
                setattr(record, field, default)
    if enabled is not None:
        record.enabled = enabled
    if is_default is not None:
        record.is_default = is_default
    if record.is_default and not record.enabled:
        raise ValidationError({"is_default": DISABLED_DEFAULT})
    # The name's uniqueness is the database's to enforce (see configsync.services.retry).
    record.full_clean(exclude=["api_key"], validate_unique=False)
    ai_provider_default_claim(provider=record)
    record.save()
    return record


def ai_provider_default_claim(*, provider: AIProviderConfig) -> None:
    """Keep "at most one default provider": when ``provider`` is the default, clear the others.

    Runs in the caller's transaction; ``provider`` may be unsaved. The others are cleared with
    ordinary saves, so the change replicates. Called by :func:`ai_provider_set` and, as the
    replication before-apply hook (``providers.apps``), for a default received from a peer: two
    nodes that each made a different provider the default converge instead of refusing the batch.
    """
    if not provider.is_default:
        return
    others = (
        AIProviderConfig.objects.select_for_update()
        .filter(is_default=True)
        .exclude(name=provider.name)
    )
    for other in others:
        other.is_default = False
        other.save(update_fields=["is_default", "updated_at"])


@transaction.atomic
def ai_provider_delete(*, name: str) -> None:
    """Delete provider ``name``; ``ConfigKeyError`` when it does not exist."""
    record = AIProviderConfig.objects.select_for_update().filter(name=name).first()
    if record is None:
        raise ConfigKeyError(name, kind="AI provider")
    record.delete()
