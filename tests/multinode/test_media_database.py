"""Nodes whose only remote is one shared external PostgreSQL database (``LOCAL_EXTERNAL``,
``EXTERNAL_DATABASE_URL`` set on both, no HTTP peers).

Two real nodes (web, Celery worker with embedded beat, own databases) converge through a real
PostgreSQL database: edits on both sides, deletes, a secret stored there only as ciphertext, a
concurrent edit kept as a conflict on both, users, and the test app's ``templates`` (full-duplex
in this mode). Waits poll with generous deadlines; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from multinode import Cluster, unique_key, wait_until
from multinode.media import database_text, external_database
from tests.factories import CANARY_SECRET
from tests.support.multinode import (
    TESTAPP_SETTINGS,
    admin_login,
    create_superuser,
    last_run_id,
    open_conflicts,
    received_from,
    run_cluster,
    seeded_status,
    set_password,
    template_body,
    template_write,
    wait_cycles,
)

pytestmark = pytest.mark.multinode

CONVERGE = 120.0
DATABASE_PEER = "external-db"
SYSTEM_CONFIG = "configsync.systemconfig"


@pytest.fixture(scope="module")
def database_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """Nodes ``a`` and ``b`` in ``LOCAL_EXTERNAL`` sharing one external database; beat 2 s."""
    root = tmp_path_factory.mktemp("database")
    with external_database("cs_mn_external") as url:
        cluster = Cluster(
            root,
            names=["a", "b"],
            links=[],
            extra_env={
                **TESTAPP_SETTINGS,
                "EXTERNAL_DATABASE_URL": url,
                "CONFIGSYNC_DEPLOYMENT_MODE": "LOCAL_EXTERNAL",
            },
        )
        for world in run_cluster(cluster):
            yield world, url


def holding(url: str, needle: str) -> list[str]:
    """The external database's tables with a row whose text contains ``needle``."""
    return [table for table, text in database_text(url).items() if needle in text]


def test_the_nodes_know_only_the_external_database(database_world: tuple[Cluster, str]) -> None:
    cluster, _ = database_world
    for node in cluster:
        report = seeded_status(node)
        assert report["deployment_mode"] == "LOCAL_EXTERNAL"
        assert [peer["name"] for peer in report["peers"]] == [DATABASE_PEER]


def test_edits_on_both_sides_converge_deletes_included(
    database_world: tuple[Cluster, str],
) -> None:
    cluster, url = database_world
    a, b = cluster["a"], cluster["b"]
    key = unique_key("DB_EDIT")

    a.cli("set", key, "from-a", check=True)
    wait_until(lambda: b.config_value(key) == "from-a", timeout=CONVERGE, what="a -> b")
    assert (received_from(b, SYSTEM_CONFIG, key) or "").startswith("db.")
    assert holding(url, key), "the change went through the external database"

    b.cli("set", key, "from-b", check=True)
    wait_until(lambda: a.config_value(key) == "from-b", timeout=CONVERGE, what="b -> a")

    doomed = unique_key("DB_DELETE")
    b.cli("set", doomed, "doomed", check=True)
    wait_until(lambda: a.config_value(doomed) == "doomed", timeout=CONVERGE, what="create")
    a.cli("delete", doomed, check=True)
    wait_until(lambda: not b.config_exists(doomed), timeout=CONVERGE, what="delete a -> b")
    wait_cycles(b, DATABASE_PEER, after=last_run_id(b), count=2, timeout=CONVERGE)
    assert not a.config_exists(doomed) and not b.config_exists(doomed)


def test_a_secret_is_stored_there_only_as_ciphertext(database_world: tuple[Cluster, str]) -> None:
    cluster, url = database_world
    a, b = cluster["a"], cluster["b"]
    key = unique_key("DB_SECRET")
    a.cli("set", key, "-", "--sensitive", stdin=CANARY_SECRET + "\n", check=True)

    wait_until(lambda: b.config_exists(key), timeout=CONVERGE, what="the secret reaches b")
    revealed = b.cli("get", key, "--reveal", check=True)
    assert revealed.stdout.strip().splitlines()[-1] == CANARY_SECRET

    tables = database_text(url)
    assert any(key in text for text in tables.values()), "the secret's change is stored there"
    for table, text in tables.items():
        assert CANARY_SECRET not in text, table
    for node in cluster:
        assert CANARY_SECRET not in node.logs()


def test_a_concurrent_edit_is_a_conflict_on_both(database_world: tuple[Cluster, str]) -> None:
    cluster, _ = database_world
    a, b = cluster["a"], cluster["b"]
    key = unique_key("DB_RACE")
    a.cli("set", key, "base", check=True)
    wait_until(lambda: b.config_value(key) == "base", timeout=CONVERGE, what="base value")

    a.stop("celery")
    b.stop("celery")
    try:
        a.cli("set", key, "edit-on-a", check=True)
        b.cli("set", key, "edit-on-b", check=True)
        assert a.config_value(key) == "edit-on-a" and b.config_value(key) == "edit-on-b"
    finally:
        a.start_celery()
        b.start_celery()

    wait_until(
        lambda: a.config_value(key) == b.config_value(key), timeout=CONVERGE, what="same winner"
    )
    winner = a.config_value(key)
    assert winner in {"edit-on-a", "edit-on-b"}
    wait_until(
        lambda: open_conflicts(a, key) == 1 and open_conflicts(b, key) == 1,
        timeout=CONVERGE,
        what="the conflict is kept on both",
    )
    for node in (a, b):
        listed = json.loads(node.cli("conflicts", "--json", check=True).stdout)
        (mine,) = [item for item in listed if item["key"] == key]
        assert mine["model"] == SYSTEM_CONFIG and mine["status"] == "open"
    wait_cycles(a, DATABASE_PEER, after=last_run_id(a), count=2, timeout=CONVERGE)
    wait_cycles(b, DATABASE_PEER, after=last_run_id(b), count=2, timeout=CONVERGE)
    assert a.config_value(key) == b.config_value(key) == winner
    assert open_conflicts(a, key) == 1 and open_conflicts(b, key) == 1


def test_a_user_made_on_a_logs_in_on_b_and_bs_new_password_reaches_a(
    database_world: tuple[Cluster, str],
) -> None:
    cluster, url = database_world
    a, b = cluster["a"], cluster["b"]
    username = unique_key("dbuser").lower()
    password = "CANARY-db-user-password-1"
    new_password = "CANARY-db-user-password-2"

    create_superuser(a, username, password)
    wait_until(
        lambda: admin_login(b, username, password), timeout=CONVERGE, what="the user logs in on b"
    )
    set_password(b, username, new_password)
    wait_until(
        lambda: admin_login(a, username, new_password),
        timeout=CONVERGE,
        what="the password set on b logs in on a",
    )
    assert not admin_login(a, username, password)
    tables = holding(url, username)
    assert tables, "the user's changes are stored there"
    for table in tables:
        assert "pbkdf2_sha256$" not in database_text(url)[table], table


def test_templates_are_full_duplex(database_world: tuple[Cluster, str]) -> None:
    cluster, _ = database_world
    a, b = cluster["a"], cluster["b"]
    rows = json.loads(a.cli("mode", "show", "--json", check=True).stdout)["strategies"]
    assert rows["templates"]["strategy"] == "full_duplex"
    assert rows["templates"]["directions"] == ["local_to_external", "external_to_local"]

    slug = unique_key("db_template").lower().replace("_", "-")
    template_write(a, slug, "first body, from a")
    wait_until(
        lambda: template_body(b, slug) == "first body, from a",
        timeout=CONVERGE,
        what="a's template reaches b",
    )
    template_write(b, slug, "second body, from b")
    wait_until(
        lambda: template_body(a, slug) == "second body, from b",
        timeout=CONVERGE,
        what="b's change reaches a",
    )
    assert (received_from(a, "testapp.template", slug) or "").startswith("db.")
