"""What a run of the .env bridge did (or, for a diff, would do): its report types.

Values of sensitive variables are masked in ``as_dict()`` (the CLI masks them in its text too);
a skipped variable carries its reason, never its value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from configsync.logging import MASK


@dataclass(frozen=True)
class VariableChange:
    """One variable the run changed (or, for a diff, would change)."""

    name: str
    key: str
    action: str
    """``set_db``, ``delete_db``, ``set_file`` or ``delete_file``."""
    old: str | None
    new: str | None
    sensitive: bool
    conflict: bool = False
    winner: str = ""
    line: int | None = None

    @property
    def direction(self) -> str:
        return "file -> database" if self.action.endswith("_db") else "database -> file"

    def as_dict(self) -> dict[str, Any]:
        def shown(value: str | None) -> str | None:
            return MASK if (self.sensitive and value is not None) else value

        return {
            "name": self.name,
            "key": self.key,
            "action": self.action,
            "direction": self.direction,
            "old": shown(self.old),
            "new": shown(self.new),
            "sensitive": self.sensitive,
            "conflict": self.conflict,
            "winner": self.winner,
            "line": self.line,
        }


@dataclass(frozen=True)
class SkippedVariable:
    """A variable left alone on both sides, with the reason (never its value)."""

    name: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.name}{where}: {self.reason}"


@dataclass
class EnvBridgeReport:
    """What a run did; ``dry_run`` for ``env_diff``."""

    path: str
    mode: str
    dry_run: bool = False
    changes: list[VariableChange] = field(default_factory=list)
    skipped: list[SkippedVariable] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    """Variables whose record changed during the run: left for the next run to merge."""
    file_written: bool = False

    @property
    def conflicts(self) -> int:
        return sum(1 for change in self.changes if change.conflict)

    @property
    def to_db(self) -> list[VariableChange]:
        return [c for c in self.changes if c.action.endswith("_db")]

    @property
    def to_file(self) -> list[VariableChange]:
        return [c for c in self.changes if c.action.endswith("_file")]

    def summary(self) -> str:
        verb = "would apply" if self.dry_run else "applied"
        return (
            f"env {self.mode} {self.path}: {verb} {len(self.to_db)} change(s) to the database, "
            f"{len(self.to_file)} to the file; {self.conflicts} conflict(s); "
            f"{len(self.skipped)} skipped"
            + (f"; {len(self.deferred)} deferred to the next run" if self.deferred else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "file_written": self.file_written,
            "conflicts": self.conflicts,
            "changes": [change.as_dict() for change in self.changes],
            "skipped": [{"name": s.name, "line": s.line, "reason": s.reason} for s in self.skipped],
            "deferred": list(self.deferred),
        }
