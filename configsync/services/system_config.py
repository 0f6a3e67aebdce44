"""Writes of ``SystemConfig``. Replication, caches and the audit trail hook in by signals."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from configsync.conf import app_settings
from configsync.exceptions import ConfigKeyError
from configsync.models import SystemConfig
from configsync.schema import declaration_get
from configsync.sensitivity import SensitivityDecision, sensitivity_decide
from configsync.services.audit import RevealRequired, audit_reveal
from configsync.services.retry import retry_on_concurrent_create
from configsync.validation import validate_storable_texts
from configsync.value_types import value_parse, value_serialize

_UNSET: Any = object()
ALREADY_EXISTS = "A record with this key already exists."
MAKE_PLAIN_NEEDS_REVEAL = (
    "Making a sensitive setting plain reveals its stored value: it needs the reveal permission "
    "(or give a new value in the same write). Nothing was changed."
)
RETYPE_NEEDS_REVEAL = (
    "Changing the type of a sensitive setting re-checks its stored value against the new type, "
    "which tells something about it: it needs the reveal permission (or give the value again in "
    "the same write). Nothing was changed."
)


EXISTING = "existing"


def system_config_sensitivity(
    *, key: str, value: Any = _UNSET, explicit: bool | None = None
) -> SensitivityDecision:
    """Whether a write of ``key`` (= ``value`` when given) stores it sensitive, and by which rule.

    The edges (CLI, REST API, .env bridge) call this and pass ``is_sensitive`` explicitly to
    :func:`system_config_set`. ``explicit`` wins (rule ``explicit``); otherwise the one secret
    rule (:func:`configsync.sensitivity.sensitivity_decide`) can only *raise* a setting to
    sensitive: an existing sensitive setting stays so (rule ``existing``) and an existing plain
    one the rule does not match stays plain (rule ``none``). Without ``value`` only the name
    is judged. Reads one row; never decrypts.
    """
    decision = sensitivity_decide(
        key=key, value=None if value is _UNSET else value, explicit=explicit
    )
    if explicit is not None or decision.sensitive:
        return decision
    current = SystemConfig.objects.filter(key=key).only("is_sensitive").first()
    if current is not None and current.is_sensitive:
        return SensitivityDecision(sensitive=True, rule=EXISTING)
    return decision


@retry_on_concurrent_create
def system_config_set(
    *,
    key: str,
    value: Any = _UNSET,
    value_type: str | None = None,
    is_sensitive: bool | None = None,
    category: str | None = None,
    description: str | None = None,
    create_only: bool = False,
    allow_reveal: bool = False,
    actor: str = "",
) -> SystemConfig:
    """Create or update the setting ``key``; return it.

    ``value`` may be typed (``42``, ``True``, a dict for json) or text to parse; left out, an
    existing record keeps its value (re-validated when the type changes, moved between plain
    text and ciphertext when the sensitivity changes, untouched otherwise). Arguments left as
    ``None`` keep the record's current attribute (or the default on create). A sensitive value is
    stored only as ciphertext. Raises ``ValidationError`` (nothing saved) when the key, type or
    value is invalid; the message never contains the value. ``DecryptionError`` when a kept
    sensitive value must be re-stored but cannot be decrypted. With ``create_only`` an existing
    ``key`` is a ``ValidationError`` instead of an update. Atomic; when another transaction
    creates ``key`` between our read and our insert, the call is retried once and then updates it
    (or, with ``create_only``, refuses) (``configsync.services.retry``).

    Reveals (``configsync.services.audit``): a write that keeps a stored secret but makes the
    setting plain stores the secret as plaintext and returns it — a reveal; one that changes a
    kept secret's type re-checks the secret against that type — an oracle on it. Both raise
    :class:`RevealRequired` (nothing saved) unless ``allow_reveal``, which only a caller holding
    the reveal right passes (REST reveal scope, admin reveal right, the local CLI with ``--yes``).
    Making plain is then audited as a reveal by ``actor``, in the same transaction. Giving a new
    ``value`` in the same write replaces the secret: nothing is revealed and neither is refused.
    """
    validate_storable_texts(key=key, category=category, description=description)
    record = SystemConfig.objects.select_for_update().filter(key=key).first()
    if record is not None and create_only:
        raise ValidationError({"key": ALREADY_EXISTS})
    if record is None:
        if value is _UNSET:
            raise ValidationError({"value": "Required when creating a setting."})
        record = SystemConfig(key=key)
    was_sensitive, old_type = record.is_sensitive, record.value_type
    held_secret = record.pk is not None and was_sensitive and record.has_value
    if value_type is not None:
        record.value_type = value_type
    if is_sensitive is not None:
        record.is_sensitive = is_sensitive
    if category is not None:
        record.category = category
    if description is not None:
        record.description = description

    reveals = False
    if value is _UNSET and held_secret:
        if not record.is_sensitive:
            if not allow_reveal:
                raise RevealRequired(MAKE_PLAIN_NEEDS_REVEAL)
            reveals = True
        elif record.value_type != old_type and not allow_reveal:
            raise RevealRequired(RETYPE_NEEDS_REVEAL)

    keep_stored = value is _UNSET and (was_sensitive, old_type) == (
        record.is_sensitive,
        record.value_type,
    )
    if not keep_stored:
        if value is _UNSET:
            value = (record.secret_value or "") if was_sensitive else record.value
        try:
            text = value_serialize(value, record.value_type)
        except ValidationError as exc:
            field = "value_type" if exc.code == "invalid_type" else "value"
            raise ValidationError({field: exc.messages}) from None
        if len(text.encode("utf-8", "surrogatepass")) > app_settings.MAX_VALUE_BYTES:
            raise ValidationError({"value": f"Longer than {app_settings.MAX_VALUE_BYTES} bytes."})
        declaration = declaration_get(key)
        if declaration is not None and declaration.value_type == record.value_type:
            # Declared choices and validators hold at every edge (CLI, API, admin, .env bridge).
            try:
                declaration.validate(value_parse(text, record.value_type))
            except ValidationError as exc:
                raise ValidationError({"value": exc.messages}) from None
        if record.is_sensitive:
            record.value = ""
            record.secret_value = text
        else:
            record.value = text
            record.secret_value = None
    # The secret is text already validated above; cleaning it would only decrypt it again.
    # Uniqueness of the key is the database's to enforce: a row that appeared since our read
    # makes the insert fail, and the retry updates it instead of refusing a "set".
    record.full_clean(exclude=["secret_value"], validate_unique=False)
    record.save()
    if reveals:
        audit_reveal(actor=actor or "unknown", instance=record)
    return record


@transaction.atomic
def system_config_delete(*, key: str) -> None:
    """Delete the setting ``key``; ``ConfigKeyError`` when it does not exist."""
    record = SystemConfig.objects.select_for_update().filter(key=key).first()
    if record is None:
        raise ConfigKeyError(key)
    record.delete()
