"""Planning a run: for each managed variable, its three versions and the merge's decision.

Reads only: the records, their replication rows and the merge bases are read once per run; a
variable whose file value does not parse as its record's type, or whose stored value cannot be
decrypted, is reported as skipped (with its line, never its value) and left alone on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError

from configsync.crypto.errors import DecryptionError
from configsync.envbridge.merge import Action, Decision, Mode, Versions, decide
from configsync.envbridge.policy import BridgePolicy
from configsync.envbridge.report import EnvBridgeReport, SkippedVariable, VariableChange
from configsync.models import EnvBridgeBase, ReplicatedRecord, SystemConfig
from configsync.replication.hlc import HLC, HLCParseError
from configsync.value_types import ValueType, value_serialize

MODEL_LABEL = "configsync.systemconfig"


@dataclass
class VariablePlan:
    """One managed variable of a run: what each side holds and what the merge decided."""

    name: str
    key: str
    record: SystemConfig | None
    replicated: ReplicatedRecord | None
    """The record's replication row as read with it (HLC, origin, tombstone)."""
    versions: Versions
    decision: Decision
    line: int | None
    sensitive: bool
    """Stored (record, base, conflict) and shown (reports) as a secret."""


def replicated_rows(keys: set[str]) -> dict[str, ReplicatedRecord]:
    """The replication row of each of ``keys`` that has one (live or tombstone)."""
    # One pass over the model's rows (no IN list: SQLite caps the number of parameters).
    rows = ReplicatedRecord.objects.filter(model_label=MODEL_LABEL).only(
        "natural_key", "hlc", "origin_node", "deleted", "updated_at"
    )
    return {row.natural_key: row for row in rows.iterator() if row.natural_key in keys}


def version_time(row: ReplicatedRecord) -> datetime:
    """When the version was made: its HLC wall time (the origin node's clock), else the row's."""
    try:
        return datetime.fromtimestamp(HLC.parse(row.hlc).wall_ms / 1000, tz=UTC)
    except HLCParseError:
        return row.updated_at


def plan_variable(
    *,
    name: str,
    policy: BridgePolicy,
    record: SystemConfig | None,
    replicated: ReplicatedRecord | None,
    file_raw: str | None,
    base_row: EnvBridgeBase | None,
    file_time: datetime | None,
    line: int | None,
    mode: Mode,
    report: EnvBridgeReport,
) -> VariablePlan | None:
    value_type = record.value_type if record is not None else ValueType.STR
    file_value: str | None = None
    if file_raw is not None:
        try:
            file_value = value_serialize(file_raw, value_type)
        except ValidationError as exc:
            reason = " ".join(exc.messages)
            report.skipped.append(
                SkippedVariable(name, line, f"does not parse as {value_type}: {reason}")
            )
            return None
    try:
        db_value = record.raw_value() if record is not None else None
        base = base_row.base() if base_row is not None else None
    except DecryptionError as exc:
        report.skipped.append(SkippedVariable(name, line, f"cannot decrypt: {exc.reason}"))
        return None

    # The database side's time: its current version's (a tombstone's for a deleted record);
    # without a matching replication row, the record's updated_at or the base's synced_at.
    db_time: datetime | None
    if replicated is not None and replicated.deleted == (record is None):
        db_time = version_time(replicated)
    elif record is not None:
        db_time = record.updated_at
    else:
        db_time = base_row.synced_at if base_row is not None else None
    versions = Versions(
        file=file_value, db=db_value, base=base, file_time=file_time, db_time=db_time
    )
    # Never downgraded: a record or base that is a secret keeps the variable one, even when
    # the record was deleted and the file brings a new value the name rule would not flag.
    sensitive = (
        (record is not None and record.is_sensitive)
        or (base_row is not None and base_row.is_sensitive)
        or policy.is_secret(name, file_raw or db_value or "")
    )
    return VariablePlan(
        name=name,
        key=policy.key_for(name),
        record=record,
        replicated=replicated,
        versions=versions,
        decision=decide(versions, mode),
        line=line,
        sensitive=sensitive,
    )


def change_of(plan: VariablePlan) -> VariableChange:
    """The report line of a plan whose decision changes a side."""
    v, action = plan.versions, plan.decision.action
    to_db = action in (Action.SET_DB, Action.DELETE_DB)
    return VariableChange(
        name=plan.name,
        key=plan.key,
        action=action.value,
        old=v.db if to_db else v.file,
        new=v.file if to_db else v.db,
        sensitive=plan.sensitive,
        conflict=plan.decision.conflict,
        winner=plan.decision.winner,
        line=plan.line,
    )
