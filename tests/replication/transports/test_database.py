"""The external database transport against real PostgreSQL (a fresh database per test, see
``tests.support.kit_database``), and once against SQLite: what a shared database adds to the
contract (``test_contract.py``): its tables, per-writer sequences and upserts, the medium id, the
replication group, faults, and the real ``sync_cycle`` through it.

This process is node ``LOCAL``; other writers are ``DatabaseTransport`` links acting as other
nodes, exactly what another node's process would do against the same database.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from configsync.conf import app_settings
from configsync.models import Conflict, Peer, ReplicatedRecord, SystemConfig
from configsync.replication.errors import TransportError
from configsync.replication.selectors.feed import feed_page
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.replication.transports.base import Transport
from configsync.replication.transports.database import DatabaseTransport
from configsync.services.system_config import system_config_set
from multinode.cluster import pg_admin
from tests.support.cli import CliResult
from tests.support.kit_database import DatabaseKit, database_kit, with_credentials  # noqa: F401
from tests.support.replication import LOCAL, OTHER, REMOTE, remote_change, stamp

pytestmark = pytest.mark.django_db(transaction=True)

MEDIUM = "db.default"
TABLES = {
    "configsync_ext_meta",
    "configsync_ext_writer",
    "configsync_ext_change",
    "configsync_ext_log",
}


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``query`` on the external database from outside Django (another client)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def our_tables(url: str) -> set[str]:
    rows = sql(url, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'configsync_ext_%%'")
    return {r[0] for r in rows}


def everything_stored(url: str) -> str:
    """Every row of every table of ours, as text."""
    return "\n".join(
        str(row) for table in sorted(TABLES) for row in sql(url, f"SELECT * FROM {table}")
    )


def read_all(
    link: Transport, cursor: str = "", *, limit: int = 100
) -> tuple[list[dict[str, Any]], str]:
    changes: list[dict[str, Any]] = []
    for _ in range(1000):
        page = link.pull(cursor, limit)
        changes.extend(page.changes)
        cursor = page.next_cursor
        if not page.has_more:
            return changes, cursor
    raise AssertionError("the medium did not end")


def keys(changes: list[dict[str, Any]]) -> list[str]:
    return [c["key"] for c in changes]


@pytest.fixture
def kit(request: pytest.FixtureRequest) -> DatabaseKit:
    """The database kit (``tests.support.kit_database``): a fresh PostgreSQL database."""
    return request.getfixturevalue("database_kit")  # type: ignore[no-any-return]


@pytest.fixture
def peer(kit: DatabaseKit) -> Peer:
    """The peer that stands for the external database, as the settings would seed it."""
    return Peer.objects.create(name="external-db", transport=Peer.TransportKind.DATABASE)


# -- tables -----------------------------------------------------------------------------------


def test_the_tables_are_created_on_first_use(kit: DatabaseKit) -> None:
    assert our_tables(kit.url) == set()
    page = kit.link(node=LOCAL).pull("", 10)
    assert our_tables(kit.url) == TABLES
    assert page.node == MEDIUM and page.changes == [] and page.next_cursor == ""
    assert sql(kit.url, "SELECT value FROM configsync_ext_meta") == [("1",)]


def test_external_init_creates_the_tables_once_and_status_shows_the_writers(
    kit: DatabaseKit, cli: Any
) -> None:
    before: CliResult = cli("external", "status")
    assert before.code == 0 and "tables missing" in before.out
    assert our_tables(kit.url) == set()  # status creates nothing
    first = cli("external", "init")
    assert first.code == 0 and "created" in first.out
    assert all(table in first.out for table in TABLES)
    assert our_tables(kit.url) == TABLES
    again = cli("external", "init")
    assert again.code == 0 and "already there" in again.out
    kit.link(node=REMOTE).push([remote_change("A", node=REMOTE), remote_change("B", node=REMOTE)])
    kit.link(node=REMOTE).log_record(direction="pull", session="ab" * 16, cursor="x=1")
    report = json.loads(cli("external", "status", "--json").out)
    assert report["medium"] == MEDIUM and report["tables_missing"] == []
    assert [(w["writer"], w["head"], w["rows"]) for w in report["writers"]] == [(REMOTE, 2, 2)]
    assert [(e["node"], e["direction"], e["cursor"]) for e in report["log"]] == [
        (REMOTE, "pull", "x=1")
    ]
    text = cli("external", "status").out
    assert f"writer {REMOTE}: head 2, 2 rows" in text
    assert "postgres://" not in text + first.out


def test_external_init_without_a_database_says_so(cli: Any, settings: Any) -> None:
    settings.EXTERNAL_DATABASE_URL = ""
    result = cli("external", "init")
    assert result.code == 1 and "EXTERNAL_DATABASE_URL is not set" in result.err


def test_nodes_starting_together_create_the_tables_once(kit: DatabaseKit) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def first_use(node: str) -> None:
        link = DatabaseTransport(name="external-db", node=node)
        try:
            barrier.wait(timeout=30)
            link.push([remote_change(f"K-{node}", node=node)])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            link.close()

    # Each thread is a node's process: it has not seen the tables yet.
    from configsync.replication.external import schema

    schema._ready.clear()
    threads = [threading.Thread(target=first_use, args=(f"node-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert our_tables(kit.url) == TABLES
    assert sql(kit.url, "SELECT COUNT(*) FROM configsync_ext_change") == [(4,)]


# -- writers and readers ----------------------------------------------------------------------


def test_two_writers_and_a_reader_page_in_each_writers_order(kit: DatabaseKit) -> None:
    one, two, reader = kit.link(node=REMOTE), kit.link(node=OTHER), kit.link(node=LOCAL)
    for i in range(5):
        one.push([remote_change(f"R{i}", node=REMOTE)])
    two.push([remote_change(f"O{i}", node=OTHER) for i in range(3)])
    seen: list[str] = []
    cursor, pages = "", 0
    while True:
        page = reader.pull(cursor, 3)
        pages += 1
        assert len(page.changes) <= 3
        seen.extend(keys(page.changes))
        cursor = page.next_cursor
        if not page.has_more:
            break
    assert pages == 3
    assert [k for k in seen if k.startswith("R")] == [f"R{i}" for i in range(5)]
    assert [k for k in seen if k.startswith("O")] == [f"O{i}" for i in range(3)]
    assert cursor == f"{OTHER}=3,{REMOTE}=5"
    # A cursor kept by a node (a new process, a new link) resumes where it was.
    one.push([remote_change("R5", node=REMOTE)])
    later, after = read_all(kit.link(node=LOCAL), cursor)
    assert keys(later) == ["R5"] and after == f"{OTHER}=3,{REMOTE}=6"


def test_a_newer_version_replaces_the_writers_row_and_the_table_stays_bounded(
    kit: DatabaseKit,
) -> None:
    writer, reader = kit.link(node=REMOTE), kit.link(node=LOCAL)
    old = remote_change("K", "v1", node=REMOTE, hlc=stamp(REMOTE, wall=1_700_000_000_000))
    writer.push([old, remote_change("Z", node=REMOTE)])
    _, cursor = read_all(reader)
    for i in (2, 3):
        hlc = stamp(REMOTE, wall=1_700_000_000_000 + i)
        writer.push([remote_change("K", f"v{i}", node=REMOTE, hlc=hlc)])
    rows = sql(kit.url, "SELECT record_key, seq FROM configsync_ext_change ORDER BY seq")
    assert rows == [("Z", 2), ("K", 4)]  # one row per record; K took the next numbers
    assert sql(kit.url, "SELECT head FROM configsync_ext_writer") == [(4,)]
    since, _ = read_all(reader, cursor)
    assert [(c["key"], c["data"]["value"]) for c in since] == [("K", "v3")]
    everything, _ = read_all(kit.link(node=OTHER))
    assert sorted((c["key"], c["data"]["value"]) for c in everything) == [("K", "v3"), ("Z", "v")]
    # A restored writer re-sending an older version, or the same one again: nothing changes.
    writer.push([old])
    writer.push([everything[-1] if everything[-1]["key"] == "K" else everything[0]])
    assert sql(kit.url, "SELECT head FROM configsync_ext_writer") == [(4,)]
    assert read_all(reader, cursor)[0] == since


def test_the_later_item_of_one_record_in_a_batch_is_kept(kit: DatabaseKit) -> None:
    first = remote_change("K", "first", node=REMOTE, hlc=stamp(REMOTE, wall=1_700_000_000_000))
    second = remote_change("K", "second", node=REMOTE, hlc=stamp(REMOTE, wall=1_700_000_000_001))
    answer = kit.link(node=REMOTE).push([first, second])
    assert [r["status"] for r in answer.results] == ["applied", "applied"]
    changes, _ = read_all(kit.link(node=LOCAL))
    assert [c["data"]["value"] for c in changes] == ["second"]


def test_every_writers_version_of_a_record_reaches_the_readers(kit: DatabaseKit) -> None:
    kit.link(node=REMOTE).push([remote_change("K", "remote", node=REMOTE)])
    kit.link(node=OTHER).push([remote_change("K", "other", node=OTHER)])
    changes, _ = read_all(kit.link(node=LOCAL))
    assert sorted((c["origin"], c["data"]["value"]) for c in changes) == [
        (OTHER, "other"),
        (REMOTE, "remote"),
    ]
    assert sql(kit.url, "SELECT COUNT(*) FROM configsync_ext_change") == [(2,)]


def test_a_malformed_item_refuses_the_whole_batch(kit: DatabaseKit) -> None:
    link = kit.link(node=REMOTE)
    for bad in ({"model": 1, "key": "B", "hlc": "x"}, "not a change", {"model": "a.b", "key": ""}):
        with pytest.raises(TransportError, match="item 1 is not a change"):
            link.push([remote_change("A", node=REMOTE), bad])  # type: ignore[list-item]
    assert read_all(kit.link(node=LOCAL))[0] == []


def test_one_writers_pushes_from_two_processes_never_share_or_skip_a_number(
    kit: DatabaseKit,
) -> None:
    """Two workers of one node push at once while a reader follows: every number is used once,
    and the reader, reading while they commit, misses nothing."""
    kit.link(node=REMOTE).pull("", 1)  # the tables exist
    done = threading.Event()
    errors: list[BaseException] = []
    read: list[str] = []

    def push(worker: str) -> None:
        link = DatabaseTransport(name="external-db", node=REMOTE)
        try:
            for batch in range(15):
                link.push([remote_change(f"{worker}-{batch}-{i}", node=REMOTE) for i in range(4)])
        except BaseException as exc:
            errors.append(exc)
        finally:
            link.close()

    def follow() -> None:
        link = DatabaseTransport(name="external-db", node=LOCAL)
        cursor = ""
        try:
            while True:
                finished = done.is_set()
                changes, cursor = read_all(link, cursor, limit=7)
                read.extend(keys(changes))
                if finished:
                    return
        except BaseException as exc:
            errors.append(exc)
        finally:
            link.close()

    workers = [threading.Thread(target=push, args=(w,)) for w in ("w1", "w2")]
    reader = threading.Thread(target=follow)
    reader.start()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    done.set()
    reader.join(timeout=120)
    assert errors == []
    seqs = [r[0] for r in sql(kit.url, "SELECT seq FROM configsync_ext_change ORDER BY seq")]
    assert seqs == list(range(1, 121))
    assert sql(kit.url, "SELECT head FROM configsync_ext_writer") == [(120,)]
    assert sorted(read) == sorted(
        f"{w}-{b}-{i}" for w in ("w1", "w2") for b in range(15) for i in range(4)
    )


def test_an_idle_pull_reads_only_the_writers_table(kit: DatabaseKit) -> None:
    writer, reader = kit.link(node=REMOTE), kit.link(node=LOCAL)
    for batch in range(10):
        writer.push([remote_change(f"K{batch}-{i}", node=REMOTE) for i in range(20)])
    _, cursor = read_all(reader)
    connection = connections[app_settings.EXTERNAL_DATABASE_ALIAS]
    with CaptureQueriesContext(connection) as queries:
        page = reader.pull(cursor, 100, with_log=True)
    assert page.changes == [] and not page.has_more and page.next_cursor == cursor
    assert len(queries) == 2  # the writers' heads, the log
    assert not any("configsync_ext_change" in q["sql"] for q in queries.captured_queries)


def test_a_database_that_was_recreated_starts_the_reader_over(kit: DatabaseKit) -> None:
    kit.link(node=REMOTE).push([remote_change("A", node=REMOTE)])
    page = kit.link(node=LOCAL).pull(f"{REMOTE}=40,{OTHER}=3", 10)
    assert keys(page.changes) == ["A"] and page.reset and page.next_cursor == f"{REMOTE}=1"


def test_a_damaged_row_is_a_fault_and_the_others_are_read(kit: DatabaseKit) -> None:
    kit.link(node=REMOTE).push([remote_change("R1", node=REMOTE), remote_change("R2", node=REMOTE)])
    kit.link(node=OTHER).push([remote_change("O1", node=OTHER)])
    good = sql(kit.url, "SELECT change_json FROM configsync_ext_change WHERE record_key = 'R2'")
    sql(
        kit.url, "UPDATE configsync_ext_change SET change_json = '{\"trunc' WHERE record_key = 'R2'"
    )
    reader = kit.link(node=LOCAL)
    page = reader.pull("", 100)
    assert sorted(keys(page.changes)) == ["O1", "R1"] and not page.has_more
    assert page.next_cursor == f"{OTHER}=1,{REMOTE}=1"  # not past the damage
    assert reader.faults == [f"writer {REMOTE}: stored change 2 is damaged"]
    sql(
        kit.url,
        "UPDATE configsync_ext_change SET change_json = %s WHERE record_key = 'R2'",
        good[0],
    )
    assert keys(kit.link(node=LOCAL).pull(page.next_cursor, 100).changes) == ["R2"]


def test_each_replication_group_sees_only_its_own(kit: DatabaseKit, settings: Any) -> None:
    kit.link(node=REMOTE).push([remote_change("A", node=REMOTE)])
    kit.link(node=REMOTE).log_record(direction="pull", session="ab" * 16, cursor="")
    settings.CONFIGSYNC_GROUP_ID = "site-2"
    other_group = kit.link(node=LOCAL)
    page = other_group.pull("", 10, with_log=True)
    assert page.node == "db.site-2" and page.changes == [] and page.log == []
    assert kit.link(node=REMOTE).log_get().entries == []


# -- secrets and failures ---------------------------------------------------------------------


def test_a_secret_is_stored_only_as_ciphertext(kit: DatabaseKit, canary: str) -> None:
    system_config_set(key="OPENAI_API_KEY", value=canary, is_sensitive=True)
    page = feed_page(node=LOCAL, cursor="", limit=100)
    (item,) = [c for c in page.changes if c["key"] == "OPENAI_API_KEY"]
    assert item["data"]["secret_value"].startswith("enc1:")
    kit.link(node=LOCAL).push([item])
    stored = everything_stored(kit.url)
    assert item["data"]["secret_value"] in stored
    assert canary not in stored
    (got,) = kit.link(node=OTHER).pull("", 10).changes
    assert got == item  # verbatim


def test_failures_are_transport_errors_that_name_no_secret(kit: DatabaseKit, settings: Any) -> None:
    password = "sk-CANARY-db-password-not-real"
    for link in (kit.down(node=LOCAL), kit.refused(node=LOCAL)):
        with pytest.raises(TransportError) as info:
            link.push([remote_change("A", node=LOCAL)])
        assert "cannot connect" in str(info.value) or "authentication" in str(info.value)
        assert "sk-CANARY" not in str(info.value) and "://" not in str(info.value)
    missing = with_credentials(kit.url, user="postgres", password=password).rsplit("/", 1)[0]
    settings.EXTERNAL_DATABASE_URL = f"{missing}/cs_no_such_db_{uuid.uuid4().hex[:8]}"
    link = DatabaseTransport(name="external-db", node=LOCAL)
    with pytest.raises(TransportError) as info:
        link.pull("", 10)
    assert "no such database" in str(info.value) and password not in str(info.value)
    assert password not in link.describe() and "PostgreSQL db cs_no_such_db_" in link.describe()
    settings.EXTERNAL_DATABASE_URL = "mysql://someone:sk-CANARY-x@host/db"
    with pytest.raises(TransportError) as info:
        DatabaseTransport(name="external-db", node=LOCAL).pull("", 10)
    assert "EXTERNAL_DATABASE_URL is not" in str(info.value) and "sk-CANARY" not in str(info.value)


@pytest.fixture
def user_without_rights(kit: DatabaseKit) -> Iterator[str]:
    """A role that may connect to the fresh database but not create tables in it."""
    role = f"cs_norights_{uuid.uuid4().hex[:8]}"
    with pg_admin(kit.url) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'sk-CANARY-norights-pw'")
    try:
        yield role
    finally:
        with pg_admin(kit.url) as admin:
            database = kit.url.rsplit("/", 1)[1]
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_missing_tables_and_no_right_to_create_them_say_so(
    kit: DatabaseKit, settings: Any, user_without_rights: str
) -> None:
    settings.EXTERNAL_DATABASE_URL = with_credentials(
        kit.url, user=user_without_rights, password="sk-CANARY-norights-pw"
    )
    link = DatabaseTransport(name="external-db", node=LOCAL)
    with pytest.raises(TransportError) as info:
        link.pull("", 10)
    assert "may not create them" in str(info.value) and "configsync external init" in str(
        info.value
    )
    assert "sk-CANARY" not in str(info.value)
    link.close()
    assert our_tables(kit.url) == set()


# -- the sync cycle through the external database ---------------------------------------------


def test_sync_cycle_pushes_pulls_and_never_echoes(kit: DatabaseKit, peer: Peer) -> None:
    system_config_set(key="FROM_LOCAL", value="a")
    first = sync_cycle(peer_id=peer.pk)
    assert first.ok and first.pushed == 1 and first.pulled == 0
    other = DatabaseTransport(name="external-db", node=OTHER)
    (mine,) = other.pull("", 10).changes
    assert mine["key"] == "FROM_LOCAL" and mine["origin"] == LOCAL
    other.push([remote_change("FROM_OTHER", "b", node=OTHER)])
    second = sync_cycle(peer_id=peer.pk)
    assert second.ok and second.pulled == 1 and second.pushed == 0
    assert SystemConfig.objects.get(key="FROM_OTHER").value == "b"
    record = ReplicatedRecord.objects.get(natural_key="FROM_OTHER")
    assert record.received_from == MEDIUM and record.origin_node == OTHER
    peer.refresh_from_db()
    assert peer.node_id == MEDIUM
    idle = sync_cycle(peer_id=peer.pk)
    assert idle.ok and idle.pulled == 0 and idle.pushed == 0
    stored = sql(kit.url, "SELECT writer, record_key FROM configsync_ext_change ORDER BY writer")
    assert stored == [(LOCAL, "FROM_LOCAL"), (OTHER, "FROM_OTHER")]  # not pushed back
    log = sql(kit.url, "SELECT node, direction FROM configsync_ext_log ORDER BY direction")
    assert log == [(LOCAL, "pull"), (LOCAL, "push")]


def test_a_concurrent_edit_through_the_database_is_kept_as_a_conflict(
    kit: DatabaseKit, peer: Peer
) -> None:
    system_config_set(key="K", value="local")
    sync_cycle(peer_id=peer.pk)
    # Another node edited K without having seen ours: its version vector does not include it.
    other = DatabaseTransport(name="external-db", node=OTHER)
    other.push([remote_change("K", "other", node=OTHER)])
    result = sync_cycle(peer_id=peer.pk)
    assert result.ok and result.conflicts == 1
    conflict = Conflict.objects.get(natural_key="K")
    assert {conflict.local_version["origin"], conflict.remote_version["origin"]} == {LOCAL, OTHER}
    # One row per writer: ours now holds the winner with our version as its loser, so the other
    # node, reading it, keeps the same conflict.
    writers = "SELECT writer FROM configsync_ext_change WHERE record_key = 'K' ORDER BY writer"
    assert sql(kit.url, writers) == [(LOCAL,), (OTHER,)]
    (theirs,) = other.pull("", 10).changes
    assert theirs["data"]["value"] == "other"
    assert [(v["origin"], v["data"]["value"]) for v in theirs["losers"]] == [(LOCAL, "local")]


def test_a_damaged_row_fails_the_run_after_applying_the_rest(kit: DatabaseKit, peer: Peer) -> None:
    DatabaseTransport(name="external-db", node=OTHER).push([remote_change("GOOD", node=OTHER)])
    DatabaseTransport(name="external-db", node=REMOTE).push([remote_change("BAD", node=REMOTE)])
    sql(
        kit.url, "UPDATE configsync_ext_change SET change_json = 'garbage' WHERE record_key = 'BAD'"
    )
    with pytest.raises(SyncCycleError) as info:
        sync_cycle(peer_id=peer.pk)
    assert "damaged" in str(info.value) and REMOTE in str(info.value)
    assert SystemConfig.objects.filter(key="GOOD").exists()
    assert not SystemConfig.objects.filter(key="BAD").exists()


# -- SQLite as the external database ----------------------------------------------------------


def test_an_sqlite_external_database_works_too(settings: Any, tmp_path: Path) -> None:
    settings.EXTERNAL_DATABASE_URL = f"sqlite:///{tmp_path / 'external.sqlite3'}"
    kit = DatabaseKit(url=settings.EXTERNAL_DATABASE_URL)
    try:
        one, two, reader = kit.link(node=REMOTE), kit.link(node=OTHER), kit.link(node=LOCAL)
        assert "SQLite file" in one.describe()
        one.push([remote_change("A", node=REMOTE), remote_change("B", node=REMOTE)])
        two.push([remote_change("C", node=OTHER)])
        first = reader.pull("", 2)
        assert len(first.changes) == 2 and first.has_more
        rest, cursor = read_all(reader, first.next_cursor)
        assert sorted(keys(first.changes + rest)) == ["A", "B", "C"]
        one.push([remote_change("A", "newer", node=REMOTE)])
        (newer,) = reader.pull(cursor, 10).changes
        assert newer["data"]["value"] == "newer"
        reader.log_record(direction="push", session="ab" * 16, cursor=cursor)
        assert reader.log_get().entry("push") is not None
        assert one.pull("", 10, with_log=True).log == []
    finally:
        kit.close()


@pytest.mark.parametrize("writer", ["node-a.", ".node-a", "node..a", "x" * 64])
def test_a_writer_with_any_valid_node_id_does_not_wedge_the_other_readers(
    kit: DatabaseKit, writer: str
) -> None:
    """Node ids are 1-64 of letters, digits, '_', '.' and '-' (``CONFIGSYNC_NODE_ID``): every
    reader's cursor must carry such a writer and read back, or the whole group stops."""
    DatabaseTransport(name="external-db", node=writer).push([remote_change("A", node=writer)])
    reader = DatabaseTransport(name="external-db", node=OTHER)
    page = reader.pull("", 10)
    assert keys(page.changes) == ["A"]
    DatabaseTransport(name="external-db", node=writer).push([remote_change("B", node=writer)])
    assert keys(reader.pull(page.next_cursor, 10).changes) == ["B"]
