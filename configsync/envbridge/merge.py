"""The per-variable three-way merge of the .env bridge: pure decisions, no I/O.

Each managed variable has three versions: the file's, the database's and the *base* (what both
held after the last bridge run; absent when the bridge never managed the variable). Values are
compared as canonical text under the record's type, so ``PORT=0080`` and the record ``80`` agree.

``sync`` (the default), per variable:

=====================  =====================  ============================================
file vs base           database vs base       outcome
=====================  =====================  ============================================
same                   same                   nothing
changed / removed      same                   the database takes it (a removal deletes the
                                              record: a tombstone that replicates)
same                   changed / deleted      the file takes it (a deletion removes the line)
changed                changed, to the same   nothing (both already agree)
changed / removed      changed / deleted      the newer side wins — file mtime against the
                                              record's time (its HLC wall time, else
                                              ``updated_at``; for a deletion, the tombstone's);
                                              ties go to the database; the loser is kept as
                                              a ``Conflict``
=====================  =====================  ============================================

With no base (first sight): a variable only in the file is imported, a record only in the
database is exported, and different values on both sides are a both-changed conflict.

``import`` makes the database follow the file (file wins every difference; a record the file
never had is left alone, a record the bridge managed and the file dropped is deleted);
``export`` makes the file follow the database symmetrically.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Mode = Literal["sync", "import", "export"]


class Action(enum.Enum):
    NONE = "none"
    SET_DB = "set_db"
    DELETE_DB = "delete_db"
    SET_FILE = "set_file"
    DELETE_FILE = "delete_file"


@dataclass(frozen=True)
class Versions:
    """One variable's three versions; ``None`` means absent (canonical text otherwise)."""

    file: str | None
    db: str | None
    base: str | None
    file_time: datetime | None = None
    db_time: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with one variable. ``conflict`` when both sides changed; ``winner`` then."""

    action: Action
    conflict: bool = False
    winner: Literal["file", "db", ""] = ""


def _to_db(v: Versions) -> Action:
    return Action.SET_DB if v.file is not None else Action.DELETE_DB


def _to_file(v: Versions) -> Action:
    return Action.SET_FILE if v.db is not None else Action.DELETE_FILE


def file_is_newer(v: Versions) -> bool:
    """Whether the file's side wins a both-changed conflict (ties go to the database)."""
    if v.file_time is None:
        return False
    if v.db_time is None:
        return True
    return v.file_time > v.db_time


def decide(v: Versions, mode: Mode = "sync") -> Decision:
    """The decision for one variable under ``mode`` (see the module docstring)."""
    if v.file == v.db:
        return Decision(Action.NONE)
    if mode == "import":
        if v.file is None and v.base is None:
            return Decision(Action.NONE)
        return Decision(_to_db(v))
    if mode == "export":
        if v.db is None and v.base is None:
            return Decision(Action.NONE)
        return Decision(_to_file(v))

    file_changed = v.base is None or v.file != v.base
    db_changed = v.base is None or v.db != v.base
    if v.base is None and (v.file is None or v.db is None):
        # First sight of a variable present on one side only: the other side takes it.
        return Decision(_to_db(v) if v.db is None else _to_file(v))
    if file_changed and not db_changed:
        return Decision(_to_db(v))
    if db_changed and not file_changed:
        return Decision(_to_file(v))
    if file_is_newer(v):
        return Decision(_to_db(v), conflict=True, winner="file")
    return Decision(_to_file(v), conflict=True, winner="db")


def outcome(v: Versions, decision: Decision) -> str | None:
    """The value both sides hold once ``decision`` is applied (``None``: absent on both)."""
    if decision.action in (Action.SET_DB, Action.DELETE_DB):
        return v.file
    if decision.action in (Action.SET_FILE, Action.DELETE_FILE):
        return v.db
    return v.file if v.file == v.db else v.base
