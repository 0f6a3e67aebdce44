"""End to end: the .env bridge on two real nodes (processes, HTTP, Celery worker and beat).

Node ``a`` and node ``b`` each keep their own ``.env`` file (``CONFIGSYNC_ENV_FILE``). An operator
edits ``a``'s file by hand; within a polling deadline ``b``'s database *and* ``b``'s own file hold
the new value, with every other byte of both files intact. An edit made on ``b`` through the
command line (the same service the admin and the API use) reaches ``a``'s file the same way.
Nothing is run by hand: the beat's ``env_sync``, push on write and replication do it. Waits poll
with generous deadlines; nothing asserts how long anything took.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from configsync.envbridge.envfile import EnvDocument
from multinode import Cluster, unique_key, wait_until
from tests.factories import CANARY_SECRET
from tests.support.multinode import run_cluster

pytestmark = pytest.mark.multinode

CONVERGE = 120.0
HEADER_A = "# node A: edited by hand\r\nexport APP_GREETING='hello from a'   # keep me\r\n\r\n"
HEADER_B = "# node B's own file\nAPP_SEEN_ON_B=yes\n"


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Nodes ``a`` and ``b`` (peers, beat every 2 s), each bridging its own ``.env`` file."""
    root = tmp_path_factory.mktemp("envbridge")
    files = {"a": root / "a.env", "b": root / "b.env"}
    for name, text in (("a", HEADER_A), ("b", HEADER_B)):
        files[name].write_bytes(text.encode())
        files[name].chmod(0o640)
    node_env = {name: {"CONFIGSYNC_ENV_FILE": str(path)} for name, path in files.items()}
    yield from run_cluster(Cluster(root, names=["a", "b"], node_env=node_env))


def env_file(cluster: Cluster, name: str) -> Path:
    return Path(cluster[name].env["CONFIGSYNC_ENV_FILE"])


def file_values(path: Path) -> dict[str, str]:
    return EnvDocument.parse_bytes(path.read_bytes()).values()


def test_edit_of_a_file_reaches_b_database_and_b_file(bridged: Cluster) -> None:
    a, b = bridged["a"], bridged["b"]
    path_a, path_b = env_file(bridged, "a"), env_file(bridged, "b")
    # The bridge's first runs: each file's variables reach both databases and both files.
    wait_until(
        lambda: file_values(path_b).get("APP_GREETING") == "hello from a",
        timeout=CONVERGE,
        what="a's initial file reaches b's file",
    )
    wait_until(
        lambda: file_values(path_a).get("APP_SEEN_ON_B") == "yes",
        timeout=CONVERGE,
        what="b's initial file reaches a's file",
    )

    key = unique_key("APP_E2E")
    value = "two words, a # hash, $NOT_EXPANDED, 'quotes' and ünïcode"
    before = path_a.read_bytes()
    # The operator appends a line in the file's own CRLF style.
    path_a.write_bytes(before + f'{key}="{value}"\r\n'.encode())
    edited = path_a.read_bytes()

    wait_until(lambda: b.config_value(key) == value, timeout=CONVERGE, what="a's file -> b's db")
    wait_until(lambda: file_values(path_b).get(key) == value, timeout=CONVERGE, what="-> b's file")
    assert a.config_value(key) == value
    # a's file is exactly what the operator wrote; b's file kept its own lines byte for byte.
    assert path_a.read_bytes() == edited
    assert path_b.read_bytes().startswith(HEADER_B.encode())
    assert oct(path_b.stat().st_mode & 0o777) == oct(0o640)

    # Changing the value in a's file again updates b's existing line in place.
    path_a.write_bytes(edited.replace(value.encode(), b"second value"))
    wait_until(
        lambda: file_values(path_b).get(key) == "second value",
        timeout=CONVERGE,
        what="second edit -> b's file",
    )
    assert b.config_value(key) == "second value"
    assert file_values(path_b).get("APP_GREETING") == "hello from a"


def test_edit_on_b_reaches_a_file_and_deletion_removes_the_line(bridged: Cluster) -> None:
    a, b = bridged["a"], bridged["b"]
    path_a = env_file(bridged, "a")
    key = unique_key("APP_FROM_B")

    b.cli("set", key, "set on b", check=True)
    wait_until(
        lambda: file_values(path_a).get(key) == "set on b", timeout=CONVERGE, what="b -> a's file"
    )
    assert a.config_value(key) == "set on b"
    assert path_a.read_bytes().startswith(HEADER_A.encode())

    b.cli("delete", key, check=True)
    wait_until(lambda: key not in file_values(path_a), timeout=CONVERGE, what="delete -> a's file")
    wait_until(lambda: not a.config_exists(key), timeout=CONVERGE, what="tombstone on a")
    assert path_a.read_bytes().startswith(HEADER_A.encode())


def test_a_secret_from_a_file_travels_encrypted(bridged: Cluster) -> None:
    a, b = bridged["a"], bridged["b"]
    path_a, path_b = env_file(bridged, "a"), env_file(bridged, "b")
    key = unique_key("APP_E2E") + "_API_KEY"
    path_a.write_bytes(path_a.read_bytes() + f"{key}={CANARY_SECRET}\r\n".encode())

    wait_until(
        lambda: file_values(path_b).get(key) == CANARY_SECRET,
        timeout=CONVERGE,
        what="secret reaches b's file",
    )
    rows = b.sql(
        "SELECT value, secret_value, is_sensitive FROM configsync_systemconfig WHERE key = %s",
        [key],
    )
    value, ciphertext, sensitive = rows[0]
    assert value == "" and sensitive and CANARY_SECRET not in str(ciphertext)
    for node in (a, b):
        raw = node.sql("SELECT base_value, base_secret FROM configsync_envbridgebase")
        assert CANARY_SECRET not in repr(raw)
        assert CANARY_SECRET not in node.logs()
