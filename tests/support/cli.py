"""What one ``manage.py configsync`` run printed (the root conftest's ``cli`` fixture runs it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CliResult:
    """What one ``manage.py configsync`` run printed, and its exit status."""

    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """The value a command prints on purpose comes last, on its own line (the contract)."""
        return self.out.rstrip("\n").split("\n")[-1]
