"""Promotion to lower environments: a snapshot made safe for staging or a developer's machine.

Data flows down (production → staging → debugging → local) while code flows up. ``promote``
reads a snapshot (its checksum verified; no key is needed: nothing is decrypted) and writes a
**promoted** snapshot (``"promoted": true``, no group, no ciphertext) by a declared table of
rules, one per data type, printed by ``configsync promote --explain``:

``content``
    kept by ``--mode content-only`` (default: the non-critical data types, i.e. a project's
    own content such as ``projects`` and ``templates``; settings, providers and users are not).
``sensitive_only``
    never promoted, in either mode (default: none).
``secrets``
    what becomes of every encrypted or sensitive wire field that has no field rule:
    ``placeholder`` (default) — ``null`` in ``data`` plus a marked plaintext in the record's
    ``placeholders``, which restore sets through the model (encrypted with the restoring
    node's own key): ``configsync-placeholder``; a system setting's placeholder is of its type
    (``PLACEHOLDER_BY_TYPE``: ``0``, ``0.0``, ``false``, ``{"configsync_placeholder":true}``,
    ``https://placeholder.invalid/``) so it still validates; or ``remove`` — every record
    holding a value in such a field is left out (the secret and what it configures are gone).
``fields``
    per field, a transform (``FIELD_TRANSFORMS``): ``keep``, ``blank``, ``hash`` (SHA-256 hex
    of the value, cut to the field's length: usernames, external account ids), ``email``
    (``<SHA-256 hex of the lower-cased address>@anonymized.local``), ``first_name`` /
    ``last_name`` (from Faker, seeded by the record's identity hash, so the same person gets
    the same name in every promotion), ``unusable_password`` (``make_password(None)``, set as a
    placeholder), ``url_credentials`` (a URL without its user info, query and fragment, where a
    plain URL field carries credentials: ``https://u:KEY@proxy/v1?key=KEY`` ->
    ``https://proxy/v1``). A transformed natural-key field renames the record.

Defaults (``DEFAULT_RULES``): ``users`` anonymizes usernames, emails, names and passwords;
``ai_providers`` strips credentials from ``base_url`` and ``endpoint``; every type's secrets
become placeholders. ``CONFIGSYNC_PROMOTION_RULES`` adds or overrides, per
data type, any of the four keys (``fields`` is merged field by field); system check
``configsync.E060`` refuses an unknown data type, key, value or transform. Tombstones are left
out of a promoted snapshot.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, make_password
from django.db import models

from configsync.conf import app_settings
from configsync.replication import registry
from configsync.snapshots.document import SnapshotError, checksum_of, document_seal

MODES = ("full", "content-only")
PLACEHOLDER = "configsync-placeholder"
"""The marker a promoted secret carries (text fields of every model)."""
PLACEHOLDER_BY_TYPE = {
    "str": PLACEHOLDER,
    "int": "0",
    "float": "0.0",
    "bool": "false",
    "json": '{"configsync_placeholder":true}',
    "url": "https://placeholder.invalid/",
}
"""A system setting's placeholder by its ``value_type``: the canonical text of a marked or zero
value of that type, so the restored setting passes its type's validation."""
ANONYMIZED_DOMAIN = "anonymized.local"
SECRETS_CHOICES = ("placeholder", "remove")
FIELD_TRANSFORMS = (
    "keep",
    "blank",
    "hash",
    "email",
    "first_name",
    "last_name",
    "unusable_password",
    "url_credentials",
)
RULE_KEYS = ("content", "sensitive_only", "secrets", "fields")

DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "users": {
        "fields": {
            "username": "hash",
            "email": "email",
            "first_name": "first_name",
            "last_name": "last_name",
            "password": "unusable_password",
        },
    },
    "ai_providers": {
        "fields": {"base_url": "url_credentials", "endpoint": "url_credentials"},
    },
}
"""The project's defaults beyond the generic ones (see the module docstring)."""


@dataclass(frozen=True)
class PromotionRule:
    """How one data type is promoted (see the module docstring)."""

    data_type: str
    content: bool
    sensitive_only: bool = False
    secrets: str = "placeholder"
    fields: Mapping[str, str] = field(default_factory=dict)
    source: str = "default"
    """``default``, or ``setting`` when ``CONFIGSYNC_PROMOTION_RULES`` changed it."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_type": self.data_type,
            "content": self.content,
            "sensitive_only": self.sensitive_only,
            "secrets": self.secrets,
            "fields": dict(sorted(self.fields.items())),
            "source": self.source,
        }


def rules_problems(overrides: Any, data_types: Mapping[str, bool]) -> list[str]:
    """What is wrong with ``CONFIGSYNC_PROMOTION_RULES`` (empty: nothing); never a value."""
    if not isinstance(overrides, dict):
        return ["must be a dict of data type -> rule"]
    problems: list[str] = []
    for data_type, rule in overrides.items():
        if data_type not in data_types:
            problems.append(f"{data_type!r} is not a registered data type")
            continue
        if not isinstance(rule, dict):
            problems.append(f"{data_type}: the rule must be a dict")
            continue
        for key in sorted(set(rule) - set(RULE_KEYS)):
            problems.append(f"{data_type}: unknown key {key!r} (use {', '.join(RULE_KEYS)})")
        for flag in ("content", "sensitive_only"):
            if flag in rule and not isinstance(rule[flag], bool):
                problems.append(f"{data_type}: {flag} must be true or false")
        if "secrets" in rule and rule["secrets"] not in SECRETS_CHOICES:
            problems.append(f"{data_type}: secrets must be one of {', '.join(SECRETS_CHOICES)}")
        if "fields" in rule:
            fields = rule["fields"]
            if not isinstance(fields, dict):
                problems.append(f"{data_type}: fields must be a dict of field -> transform")
                continue
            models_ = [rm for rm in registry.all_registered() if rm.data_type == data_type]
            known = {name for rm in models_ for name in rm.wire_field_names()}
            secret = {name for rm in models_ for name in rm.encrypted_field_names()}
            for name, transform in fields.items():
                if name not in known:
                    problems.append(f"{data_type}: no model of it has a field {name!r}")
                elif transform == "unusable_password" and name not in secret:
                    # Restore sets placeholders only through secret fields: it would refuse it.
                    problems.append(
                        f"{data_type}.{name}: unusable_password is for a secret field only"
                    )
                if transform not in FIELD_TRANSFORMS:
                    problems.append(
                        f"{data_type}.{name}: unknown transform (use {', '.join(FIELD_TRANSFORMS)})"
                    )
    return problems


def promotion_rules() -> dict[str, PromotionRule]:
    """The rules table: every registered data type, defaults merged with the setting.

    ``SnapshotError`` when the setting is invalid (check E060 says so at start-up)."""
    types = registry.data_types()
    overrides = app_settings.PROMOTION_RULES or {}
    problems = rules_problems(overrides, types)
    if problems:
        raise SnapshotError("CONFIGSYNC_PROMOTION_RULES: " + "; ".join(problems))
    table: dict[str, PromotionRule] = {}
    for data_type, critical in sorted(types.items()):
        base: dict[str, Any] = {"content": not critical, **DEFAULT_RULES.get(data_type, {})}
        override = overrides.get(data_type) or {}
        merged = {**base, **override}
        merged["fields"] = {**base.get("fields", {}), **override.get("fields", {})}
        table[data_type] = PromotionRule(
            data_type=data_type,
            content=bool(merged["content"]),
            sensitive_only=bool(merged.get("sensitive_only", False)),
            secrets=str(merged.get("secrets", "placeholder")),
            fields=merged["fields"],
            source="setting" if override else "default",
        )
    return table


def explain_lines(table: Mapping[str, PromotionRule]) -> list[str]:
    """The table as text, one data type per line."""
    lines = ["data type        content  sensitive-only  secrets      fields (source)"]
    for rule in table.values():
        fields = ", ".join(f"{k}={v}" for k, v in sorted(rule.fields.items())) or "-"
        lines.append(
            f"{rule.data_type:<16} {'yes' if rule.content else 'no':<8} "
            f"{'yes' if rule.sensitive_only else 'no':<15} {rule.secrets:<12} "
            f"{fields} ({rule.source})"
        )
    return lines


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Faker:
    """One Faker instance, reseeded per record (so names depend only on the record)."""

    def __init__(self) -> None:
        from faker import Faker

        self.faker = Faker()

    def name(self, kind: str, seed_hex: str) -> str:
        self.faker.seed_instance(int(seed_hex[:16], 16))
        return str(self.faker.first_name() if kind == "first_name" else self.faker.last_name())


def _max_length(rm: registry.ReplicatedModel, name: str) -> int | None:
    try:
        f = rm.model._meta.get_field(name)
    except Exception:
        return None
    return getattr(f, "max_length", None) if isinstance(f, models.Field) else None


def _identity_hash(data: dict[str, Any], key: str) -> str:
    email = data.get("email")
    if isinstance(email, str) and email:
        return sha256_hex(email.strip().lower())
    return sha256_hex(key)


def _transform(
    transform: str, value: Any, *, rm: registry.ReplicatedModel, name: str, seed: str, fake: _Faker
) -> Any:
    if transform == "keep":
        return value
    if value in (None, "") and transform != "unusable_password":
        return value
    if transform == "blank":
        return ""
    if transform == "hash":
        digest = sha256_hex(str(value))
        limit = _max_length(rm, name)
        return digest[:limit] if limit else digest
    if transform == "email":
        return f"{sha256_hex(str(value).strip().lower())}@{ANONYMIZED_DOMAIN}"
    if transform in ("first_name", "last_name"):
        result = fake.name(transform, seed)
        limit = _max_length(rm, name)
        return result[:limit] if limit else result
    if transform == "url_credentials":
        return url_without_credentials(str(value))
    raise AssertionError(transform)  # unusable_password is handled as a placeholder


def url_without_credentials(url: str) -> str:
    """``url`` without the parts that carry credentials: user info, query and fragment. A text
    that does not parse as a URL (``http://[x``) becomes ``""``: where its credentials are
    cannot be told."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def placeholder_matches(*, placeholder: str, current: str) -> bool:
    """Whether a secret's ``current`` plaintext already is what ``placeholder`` sets: the same
    text, or both unusable passwords (``make_password(None)`` is random: every promotion writes
    another one, all equally unusable)."""
    if placeholder.startswith(UNUSABLE_PASSWORD_PREFIX):
        return current.startswith(UNUSABLE_PASSWORD_PREFIX)
    return hmac.compare_digest(placeholder.encode(), current.encode())


def _placeholder(rm: registry.ReplicatedModel, name: str, data: dict[str, Any]) -> str:
    if rm.label == "configsync.systemconfig" and name == "secret_value":
        return PLACEHOLDER_BY_TYPE.get(str(data.get("value_type")), PLACEHOLDER)
    return PLACEHOLDER


def promote_record(
    record: dict[str, Any], rule: PromotionRule, fake: _Faker
) -> dict[str, Any] | None:
    """The promoted copy of one live record, or ``None`` when the rule leaves it out."""
    rm = registry.get(record["model"])
    data = dict(record["data"])
    seed = _identity_hash(data, record["key"])
    secret = set(rm.encrypted_field_names())
    placeholders: dict[str, str] = dict(record.get("placeholders") or {})  # promoted again
    for name in rm.wire_field_names():
        if name not in data:
            continue
        transform = rule.fields.get(name)
        if transform == "unusable_password" or (transform is None and name in secret):
            if transform is None and rule.secrets == "remove":
                if data[name] is not None:
                    return None
                continue
            had_value = data[name] is not None or name in placeholders
            data[name] = None
            if transform == "unusable_password":
                placeholders[name] = make_password(None)
            elif had_value:
                placeholders[name] = _placeholder(rm, name, data)
            continue
        if name in secret:
            data[name] = None  # a field rule on a secret field never keeps its ciphertext
        if transform is not None:
            data[name] = _transform(transform, data[name], rm=rm, name=name, seed=seed, fake=fake)
    key = str(data.get(rm.natural_key_field, record["key"]))
    promoted = {
        "model": rm.label,
        "key": key,
        "hlc": record["hlc"],
        "origin": record["origin"],
        "version_vector": record["version_vector"],
        "deleted": False,
        "data": data,
    }
    if placeholders:
        promoted["placeholders"] = placeholders
    return promoted


def promote_document(*, document: dict[str, Any], mode: str) -> dict[str, Any]:
    """The promoted snapshot of ``document`` (validated by ``snapshot_load``) in ``mode``
    (``full`` or ``content-only``); ``SnapshotError`` for an unknown mode, a record of a
    model this node does not know (its secret fields could not be told) or whose data names
    another key than the record's."""
    if mode not in MODES:
        raise SnapshotError(f"unknown promotion mode {mode[:40]!r}: use {' or '.join(MODES)}")
    table = promotion_rules()
    kept_types = sorted(
        data_type
        for data_type in document["data_types"]
        if data_type in table
        and not table[data_type].sensitive_only
        and (mode == "full" or table[data_type].content)
    )
    fake = _Faker()
    records: list[dict[str, Any]] = []
    for record in document["records"]:
        try:
            rm = registry.get(record["model"])
        except LookupError:
            raise SnapshotError(
                f"{record['model'][:100]}: the model does not replicate on this node"
            ) from None
        if record["deleted"] or rm.data_type not in kept_types:
            continue
        if record["data"].get(rm.natural_key_field, record["key"]) != record["key"]:
            # As restore refuses it: the promoted record would be named by the data's key.
            raise SnapshotError(
                f"{record['model'][:100]} {record['key'][:255]!r}: its {rm.natural_key_field} "
                "is not the record's key"
            )
        promoted = promote_record(record, table[rm.data_type], fake)
        if promoted is not None:
            records.append(promoted)
    records.sort(key=lambda r: (r["model"], r["key"]))
    return document_seal(
        {
            "format": document["format"],
            "node_id": document["node_id"],
            "group_id": None,
            "created_at": document["created_at"],
            "key_ids": [],
            "promoted": True,
            "promotion": {"mode": mode, "source_checksum": checksum_of(document)},
            "data_types": kept_types,
            "records": records,
        }
    )
