"""The per-variable three-way merge decisions (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from configsync.envbridge.merge import Action, Versions, decide, outcome

OLD = datetime(2026, 1, 1, tzinfo=UTC)
NEW = OLD + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("file", "db", "base", "action"),
    [
        ("a", "a", "a", Action.NONE),
        ("b", "a", "a", Action.SET_DB),  # changed only in the file
        (None, "a", "a", Action.DELETE_DB),  # removed from the file, bridge had managed it
        ("a", "b", "a", Action.SET_FILE),  # changed only in the database
        ("a", None, "a", Action.DELETE_FILE),  # deleted in the database
        ("b", "b", "a", Action.NONE),  # both changed to the same value
        ("a", None, None, Action.SET_DB),  # first sight, only in the file
        (None, "a", None, Action.SET_FILE),  # first sight, only in the database
    ],
)
def test_one_sided_changes(
    file: str | None, db: str | None, base: str | None, action: Action
) -> None:
    decision = decide(Versions(file=file, db=db, base=base, file_time=NEW, db_time=OLD))
    assert decision.action is action
    assert not decision.conflict


@pytest.mark.parametrize(
    ("file_time", "db_time", "action", "winner"),
    [
        (NEW, OLD, Action.SET_DB, "file"),
        (OLD, NEW, Action.SET_FILE, "db"),
        (OLD, OLD, Action.SET_FILE, "db"),
    ],
)
def test_both_changed_newer_wins_ties_to_the_database(
    file_time: datetime, db_time: datetime, action: Action, winner: str
) -> None:
    versions = Versions(file="f", db="d", base="a", file_time=file_time, db_time=db_time)
    decision = decide(versions)
    assert (decision.action, decision.conflict, decision.winner) == (action, True, winner)
    assert outcome(versions, decision) == ("f" if winner == "file" else "d")


def test_removed_in_file_while_changed_in_database() -> None:
    assert decide(Versions(None, "d", "a", file_time=NEW, db_time=OLD)).action is Action.DELETE_DB
    assert decide(Versions(None, "d", "a", file_time=OLD, db_time=NEW)).action is Action.SET_FILE


def test_deleted_in_database_while_changed_in_file() -> None:
    assert decide(Versions("f", None, "a", file_time=NEW, db_time=OLD)).action is Action.SET_DB
    assert decide(Versions("f", None, "a", file_time=OLD, db_time=NEW)).action is Action.DELETE_FILE


def test_first_sight_with_different_values_is_a_conflict() -> None:
    decision = decide(Versions("f", "d", None, file_time=NEW, db_time=OLD))
    assert decision.conflict and decision.action is Action.SET_DB


def test_import_and_export_force_one_direction() -> None:
    both = Versions("f", "d", "a", file_time=OLD, db_time=NEW)
    assert decide(both, "import").action is Action.SET_DB
    assert decide(both, "export").action is Action.SET_FILE
    # Import leaves records the file never had; export leaves lines the database never had.
    assert decide(Versions(None, "d", None), "import").action is Action.NONE
    assert decide(Versions("f", None, None), "export").action is Action.NONE
    assert decide(Versions(None, "d", "d"), "import").action is Action.DELETE_DB
    assert decide(Versions("f", None, "f"), "export").action is Action.DELETE_FILE
