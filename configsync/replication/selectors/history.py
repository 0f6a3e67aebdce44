"""Reads of the version history (``RecordVersion``): the versions of a record, one version, and a
view of each for people that never holds a secret.

A version's ``data`` is the wire form: secrets are ciphertext tokens. :func:`record_history`
turns each kept version into a :class:`VersionView`: number, human time, actor, entry point,
origin node, HLC, tombstone, and per field the value of a plain field or :data:`MASK` for a
sensitive one, with the diff against the previous kept version. Whether a secret changed is
decided without showing it: equal tokens are the same value; otherwise the keyed hashes the audit
trail recorded with each version (``AuditEvent.value_hashes``) are compared when both were made
under one key; otherwise both tokens are decrypted in memory and compared (the plaintexts are
never returned). A secret this node cannot read compares as ``"unknown"``.

Which fields are masked: the model's encrypted and sensitive wire fields
(``registry.ReplicatedModel.encrypted_field_names``), plus :data:`MASKED_WHEN` — a system
setting's plain ``value`` in every kept version once any kept version marks it sensitive (it was
plain then; it is a secret now, so the history does not hand it to whoever can read history).
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass, field
from typing import Any

from configsync.crypto.errors import ConfigsyncError
from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import get_keyring, token_key_id
from configsync.logging import MASK
from configsync.models import AuditEvent, RecordVersion, ReplicatedRecord
from configsync.replication import registry
from configsync.replication.hlc import HLC, HLCParseError

SAME = "same"
CHANGED = "changed"
UNKNOWN = "unknown"

MASKED_WHEN: dict[str, tuple[str, tuple[str, ...]]] = {
    "configsync.systemconfig": ("is_sensitive", ("value",)),
}
"""label -> (flag field, fields): mask ``fields`` in every kept version of a record once any kept
version has ``flag`` set. A project may add rows for its own models."""


class HistoryError(ConfigsyncError):
    """A history read (or a rollback) names a model that does not replicate or a version that is
    not kept. The message names the model, key and number, never a value."""


@dataclass(frozen=True)
class FieldChange:
    """One field that differs from the previous kept version.

    For a plain field ``before``/``after`` are the values; for a sensitive one both are
    :data:`MASK` (or ``None`` when unset) and ``status`` says whether the value itself changed:
    ``"changed"``, ``"same"`` (re-encrypted, e.g. after a key rotation) or ``"unknown"``.
    """

    name: str
    sensitive: bool
    before: Any
    after: Any
    status: str = CHANGED

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.name,
            "sensitive": self.sensitive,
            "before": self.before,
            "after": self.after,
            "status": self.status,
        }


@dataclass(frozen=True)
class VersionView:
    """One kept version as people see it (no secret in it). ``changes`` is ``None`` when the
    previous version is no longer kept (only the newest ``CONFIGSYNC_HISTORY_VERSIONS`` are)."""

    model_label: str
    natural_key: str
    number: int
    hlc: str
    time: str
    recorded_at: dt.datetime
    actor: str
    via: str
    origin_node: str
    deleted: bool
    fields: dict[str, Any]
    sensitive_fields: list[str]
    changes: list[FieldChange] | None = field(default=None)
    current: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the API and ``configsync history --json`` print."""
        return {
            "model": self.model_label,
            "key": self.natural_key,
            "version": self.number,
            "current": self.current,
            "hlc": self.hlc,
            "time": self.time,
            "recorded_at": self.recorded_at.isoformat(),
            "actor": self.actor,
            "via": self.via,
            "origin_node": self.origin_node,
            "deleted": self.deleted,
            "values": self.fields,
            "sensitive_fields": self.sensitive_fields,
            "changes": None
            if self.changes is None
            else [change.as_dict() for change in self.changes],
        }


def history_model(label: str) -> registry.ReplicatedModel:
    """The registration of ``label`` (``app_label.modelname``, any case); ``HistoryError`` when
    it does not replicate."""
    try:
        return registry.get(label)
    except LookupError:
        raise HistoryError(f"{label!r} is not a replicated model") from None


def record_versions(*, model_label: str, natural_key: str) -> list[RecordVersion]:
    """The kept versions of one record, newest first (empty when none is kept)."""
    label = history_model(model_label).label
    return list(
        RecordVersion.objects.filter(model_label=label, natural_key=natural_key).order_by("-number")
    )


def record_version_get(*, model_label: str, natural_key: str, number: int) -> RecordVersion:
    """Version ``number`` of one record; ``HistoryError`` when it is not kept."""
    label = history_model(model_label).label
    version = RecordVersion.objects.filter(
        model_label=label, natural_key=natural_key, number=number
    ).first()
    if version is None:
        raise HistoryError(f"{label} {natural_key!r} has no kept version {number}")
    return version


def version_unmasks(*, model_label: str, natural_key: str, data: dict[str, Any] | None) -> bool:
    """Whether writing ``data`` (wire form) as the record's new version would show a value its
    history masks: a plain value of a :data:`MASKED_WHEN` field in a version without the flag,
    while the current record or any kept version sets it (a setting that is, or was, sensitive).
    Rollback and restore ask it: such a write needs the reveal right."""
    rm = history_model(model_label)
    rule = MASKED_WHEN.get(rm.label)
    if rule is None or not isinstance(data, dict) or data.get(rule[0]):
        return False
    flag, names = rule
    if not any(data.get(name) not in (None, "") for name in names):
        return False
    current = (
        ReplicatedRecord.objects.filter(model_label=rm.label, natural_key=natural_key)
        .values_list("data", flat=True)
        .first()
    )
    kept = RecordVersion.objects.filter(model_label=rm.label, natural_key=natural_key).values_list(
        "data", flat=True
    )
    return any(isinstance(d, dict) and bool(d.get(flag)) for d in [current, *kept])


def moment_ms(moment: dt.datetime) -> str:
    """``moment`` for people: UTC to the millisecond (the history, and every admin page)."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def hlc_time(hlc: str, fallback: dt.datetime | None = None) -> str:
    """The wall time of ``hlc`` for people (``moment_ms``); for a text that holds no usable time
    (no HLC, a wall clock of 0 as a ``.env`` file version without a modification time, or one
    beyond what a date holds), ``fallback`` (when this node stored it), else the text itself."""
    try:
        wall_ms = HLC.parse(hlc).wall_ms
        if wall_ms <= 0:
            raise ValueError("no wall-clock time")
        moment = dt.datetime.fromtimestamp(wall_ms / 1000, tz=dt.UTC)
    except (HLCParseError, OverflowError, ValueError, OSError):
        if fallback is None:
            return hlc or "-"
        moment = fallback
    return moment_ms(moment)


def _masked_fields(rm: registry.ReplicatedModel, versions: list[RecordVersion]) -> set[str]:
    masked = set(rm.encrypted_field_names())
    rule = MASKED_WHEN.get(rm.label)
    if rule is not None:
        flag, names = rule
        if any(isinstance(v.data, dict) and v.data.get(flag) for v in versions):
            masked.update(names)
    return masked


def secret_status(
    rm: registry.ReplicatedModel,
    natural_key: str,
    name: str,
    before: Any,
    after: Any,
    hashes: tuple[str | None, str | None] = (None, None),
) -> str:
    """Whether two wire values of the masked field ``name`` hold the same value: ``SAME``,
    ``CHANGED`` or ``UNKNOWN`` (a token this node cannot open). Equal tokens are the same value;
    else the keyed ``hashes`` the audit trail recorded, when made under one key; else both tokens
    are decrypted in memory and compared (the history's diff and the admin's conflict page).
    No value leaves this function."""
    if before == after:
        return SAME
    if not before or not after:
        return CHANGED  # set or cleared
    if name not in rm.encrypted_field_names():
        return CHANGED  # a plain field masked by MASKED_WHEN: its values differ
    first, second = hashes
    if (
        first
        and second
        and first.count(":") == 2
        and second.count(":") == 2
        and first.split(":")[1] == second.split(":")[1]
    ):  # keyed hashes made under one key compare directly
        return SAME if hmac.compare_digest(first, second) else CHANGED
    try:
        keyring = get_keyring()
        if token_key_id(str(before)) not in keyring or token_key_id(str(after)) not in keyring:
            return UNKNOWN
        context = encryption_context_for(
            model_label=rm.label, field_name=name, natural_key=natural_key
        )
        equal = hmac.compare_digest(
            keyring.decrypt(str(before), context=context).encode(),
            keyring.decrypt(str(after), context=context).encode(),
        )
    except Exception:  # a token that does not open here: say so, never why in detail
        return UNKNOWN
    return SAME if equal else CHANGED


def _shown(name: str, value: Any, masked: set[str]) -> Any:
    if name in masked:
        return MASK if value not in (None, "") else None
    return value


def _value_hashes(label: str, natural_key: str, hlcs: list[str]) -> dict[str, dict[str, str]]:
    """hlc -> the keyed hashes the audit trail recorded with the version of that HLC."""
    found: dict[str, dict[str, str]] = {}
    for hlc, hashes in AuditEvent.objects.filter(
        model_label=label, natural_key=natural_key, hlc__in=hlcs
    ).values_list("hlc", "value_hashes"):
        if isinstance(hashes, dict) and hashes:
            found.setdefault(hlc, hashes)
    return found


def record_history(*, model_label: str, natural_key: str) -> list[VersionView]:
    """Every kept version of one record for people, newest first; see the module docstring.

    ``HistoryError`` when the model does not replicate. An empty list when nothing is kept (a
    record that never existed here, or one older than the history).
    """
    rm = history_model(model_label)
    versions = record_versions(model_label=rm.label, natural_key=natural_key)
    if not versions:
        return []
    masked = _masked_fields(rm, versions)
    hashes = _value_hashes(rm.label, natural_key, [v.hlc for v in versions])
    by_number = {v.number: v for v in versions}
    newest = versions[0].number
    views: list[VersionView] = []
    for version in versions:
        data: dict[str, Any] = version.data if isinstance(version.data, dict) else {}
        previous = by_number.get(version.number - 1)
        changes: list[FieldChange] | None
        if previous is None and version.number > 1:
            changes = None
        else:
            before: dict[str, Any] = (
                previous.data if previous is not None and isinstance(previous.data, dict) else {}
            )
            changes = []
            for name in sorted(set(before) | set(data)):
                old, new = before.get(name), data.get(name)
                if old == new or (name in masked and not old and not new):
                    continue
                if name in masked:
                    status = secret_status(
                        rm,
                        natural_key,
                        name,
                        old,
                        new,
                        (
                            hashes.get(previous.hlc, {}).get(name) if previous else None,
                            hashes.get(version.hlc, {}).get(name),
                        ),
                    )
                    changes.append(
                        FieldChange(
                            name=name,
                            sensitive=True,
                            before=_shown(name, old, masked),
                            after=_shown(name, new, masked),
                            status=status,
                        )
                    )
                else:
                    changes.append(FieldChange(name=name, sensitive=False, before=old, after=new))
        views.append(
            VersionView(
                model_label=rm.label,
                natural_key=natural_key,
                number=version.number,
                hlc=version.hlc,
                time=hlc_time(version.hlc, version.recorded_at),
                recorded_at=version.recorded_at,
                actor=version.actor,
                via=version.via,
                origin_node=version.origin_node,
                deleted=version.deleted,
                fields={name: _shown(name, value, masked) for name, value in data.items()},
                sensitive_fields=sorted(masked & set(data)) if data else sorted(masked),
                changes=changes,
                current=version.number == newest,
            )
        )
    return views
