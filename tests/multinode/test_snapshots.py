"""Snapshots between real nodes: a restore on ``a`` replicates to ``b``; a promoted snapshot of
``a`` restores on ``c``, a fresh node of another group with other keys, and holds none of ``a``'s
secrets or identities."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from configsync.crypto.keyring import generate_key
from multinode import Cluster, unique_key, wait_until
from tests.factories import CANARY_SECRET
from tests.support.multinode import create_superuser, run_cluster

pytestmark = pytest.mark.multinode

CONVERGE = 90.0


@pytest.fixture(scope="module")
def snapshot_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``a`` and ``b`` peer; ``c`` is alone, of another group, with its own key."""
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster"),
        names=["a", "b", "c"],
        links=[("a", "b")],
        node_env={
            "c": {
                "CONFIGSYNC_ENCRYPTION_KEYS": generate_key(),
                "CONFIGSYNC_GROUP_ID": "staging",
            }
        },
    )
    yield from run_cluster(cluster)


def test_a_restore_on_a_replicates_to_b(snapshot_nodes: Cluster, tmp_path: Path) -> None:
    a, b = snapshot_nodes["a"], snapshot_nodes["b"]
    key, doomed = unique_key("RESTORED"), unique_key("DOOMED")
    a.cli("set", key, "good", check=True)
    wait_until(lambda: b.config_value(key) == "good", timeout=CONVERGE, what="a -> b")
    backup = tmp_path / "a.json"
    a.cli("snapshot", "--output", str(backup), check=True)

    b.cli("set", key, "bad", check=True)
    b.cli("set", doomed, "later", check=True)
    wait_until(lambda: a.config_value(key) == "bad", timeout=CONVERGE, what="b -> a")
    wait_until(lambda: a.config_exists(doomed), timeout=CONVERGE, what="b's new key -> a")

    dry = a.cli("restore", str(backup), "--dry-run", check=True)
    assert f"changed  configsync.systemconfig {key}" in dry.stdout
    assert f"removed  configsync.systemconfig {doomed}" in dry.stdout
    a.cli("restore", str(backup), check=True)

    wait_until(lambda: b.config_value(key) == "good", timeout=CONVERGE, what="restored -> b")
    wait_until(lambda: not b.config_exists(doomed), timeout=CONVERGE, what="removal -> b")
    ((via,),) = b.sql(
        "SELECT via FROM configsync_recordversion WHERE natural_key = %s"
        " ORDER BY number DESC LIMIT 1",
        [key],
    )
    assert via == "peer"  # b got it replicated; a recorded it as a restore
    ((via_a,),) = a.sql(
        "SELECT via FROM configsync_recordversion WHERE natural_key = %s"
        " ORDER BY number DESC LIMIT 1",
        [key],
    )
    assert via_a == "restore"


def test_a_promoted_snapshot_restores_on_a_fresh_node_with_other_keys(
    snapshot_nodes: Cluster, tmp_path: Path
) -> None:
    a, c = snapshot_nodes["a"], snapshot_nodes["c"]
    secret_key, port_key, plain_key = (
        unique_key("DB_PASSWORD"),
        unique_key("PORT_SECRET"),
        unique_key("SITE"),
    )
    a.cli("set", secret_key, CANARY_SECRET, "--sensitive", check=True)
    a.cli("set", port_key, "4242", "--type", "int", "--sensitive", check=True)
    a.cli("set", plain_key, "from-production", check=True)
    person = unique_key("person").lower()
    create_superuser(a, person, "CANARY-user-password-x1")
    email = f"{person}@example.invalid"
    backup, promoted = tmp_path / "prod.json", tmp_path / "staging.json"
    a.cli("snapshot", "--output", str(backup), check=True)
    a.cli("promote", "--from", str(backup), "--mode", "full", "--output", str(promoted), check=True)

    blob = promoted.read_text()
    for text in (CANARY_SECRET, email, person):
        assert text not in blob
        assert base64.b64encode(text.encode()).decode().rstrip("=")[:-4] not in blob
    assert "enc1:" not in blob

    # The same snapshot unpromoted is refused by c: another group.
    refused = c.cli("restore", str(backup))
    assert refused.returncode == 1 and "another replication group" in refused.stderr

    c.cli("restore", str(promoted), check=True)

    assert c.config_value(plain_key) == "from-production"
    shown = c.cli("get", secret_key, "--reveal", check=True).stdout.strip().splitlines()[-1]
    assert shown == "configsync-placeholder"
    port = c.cli("get", port_key, "--reveal", check=True).stdout.strip().splitlines()[-1]
    assert port == "0"
    email_hash = hashlib.sha256(email.lower().encode()).hexdigest()
    ((password,),) = c.sql(
        "SELECT password FROM auth_user WHERE email = %s", [f"{email_hash}@anonymized.local"]
    )
    assert password.startswith("!")  # unusable
    assert not c.sql("SELECT 1 FROM auth_user WHERE username = %s", [person])
    # c's own admin is still there (a promoted restore never removes local users).
    assert c.sql("SELECT 1 FROM auth_user WHERE username = 'admin'")
