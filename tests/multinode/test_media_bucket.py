"""Nodes whose only remote is one S3-compatible bucket (``LOCAL_R2``, no HTTP peers).

Three real nodes (web, Celery worker with embedded beat, own databases) share one bucket on a
real moto server over HTTP. Edits on any side converge, deletes included; a secret reaches the
bucket only as ciphertext; a concurrent edit is kept as a conflict on both writers; users log in
everywhere; the test app's ``templates`` (not critical) are written to the bucket and never read
back; a damaged segment is refused and reported while the rest converges, and repairing it
brings it in. Waits poll with generous deadlines; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from multinode import Cluster, unique_key, wait_until
from multinode.media import readable, s3_server
from tests.factories import CANARY_SECRET
from tests.support.multinode import (
    TESTAPP_SETTINGS,
    Medium,
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
BUCKET_PEER = "r2"
SYSTEM_CONFIG = "configsync.systemconfig"
DAMAGE = re.compile(r"damaged segment.*checksum mismatch")


@pytest.fixture(scope="module")
def bucket_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Medium]]:
    """Nodes ``a``, ``b``, ``c`` in ``LOCAL_R2``, no HTTP peers, one shared bucket; beat 2 s."""
    root = tmp_path_factory.mktemp("bucket")
    with s3_server(log=root / "moto.log") as server:
        bucket = server.create_bucket()
        cluster = Cluster(
            root,
            names=["a", "b", "c"],
            links=[],
            extra_env={
                **server.env(bucket),
                **TESTAPP_SETTINGS,
                "CONFIGSYNC_DEPLOYMENT_MODE": "LOCAL_R2",
            },
        )
        for world in run_cluster(cluster):
            yield world, Medium(server, bucket)


def test_the_nodes_know_only_the_bucket(bucket_world: tuple[Cluster, Medium]) -> None:
    cluster, _ = bucket_world
    for node in cluster:
        report = seeded_status(node)
        assert report["deployment_mode"] == "LOCAL_R2"
        assert [peer["name"] for peer in report["peers"]] == [BUCKET_PEER]


def test_edits_on_both_sides_converge_deletes_included(
    bucket_world: tuple[Cluster, Medium],
) -> None:
    cluster, medium = bucket_world
    a, b = cluster["a"], cluster["b"]
    key = unique_key("BUCKET_EDIT")

    a.cli("set", key, "from-a", check=True)
    wait_until(lambda: b.config_value(key) == "from-a", timeout=CONVERGE, what="a -> b")
    assert (received_from(b, SYSTEM_CONFIG, key) or "").startswith("bucket.")
    assert medium.holding(key), "the change went through the bucket"

    b.cli("set", key, "from-b", check=True)
    wait_until(lambda: a.config_value(key) == "from-b", timeout=CONVERGE, what="b -> a")

    doomed = unique_key("BUCKET_DELETE")
    b.cli("set", doomed, "doomed", check=True)
    wait_until(lambda: a.config_value(doomed) == "doomed", timeout=CONVERGE, what="create")
    a.cli("delete", doomed, check=True)
    wait_until(lambda: not b.config_exists(doomed), timeout=CONVERGE, what="delete a -> b")
    # Not resurrected by later cycles: b runs two more after the delete and still lacks it.
    wait_cycles(b, BUCKET_PEER, after=last_run_id(b), count=2, timeout=CONVERGE)
    assert not a.config_exists(doomed) and not b.config_exists(doomed)
    assert b.cli("get", doomed).returncode == 1


def test_a_secret_reaches_the_bucket_only_as_ciphertext(
    bucket_world: tuple[Cluster, Medium],
) -> None:
    cluster, medium = bucket_world
    a, b = cluster["a"], cluster["b"]
    key = unique_key("BUCKET_SECRET")
    a.cli("set", key, "-", "--sensitive", stdin=CANARY_SECRET + "\n", check=True)

    wait_until(lambda: b.config_exists(key), timeout=CONVERGE, what="the secret reaches b")
    revealed = b.cli("get", key, "--reveal", check=True)
    assert revealed.stdout.strip().splitlines()[-1] == CANARY_SECRET

    objects = medium.objects()
    assert any(key.encode() in readable(data) for data in objects.values()), (
        "the secret's change is in the bucket (so the search below looks at it)"
    )
    for name, data in objects.items():
        assert CANARY_SECRET.encode() not in data, name
        assert CANARY_SECRET.encode() not in readable(data), name
    for node in cluster:
        assert CANARY_SECRET not in node.logs()


def test_a_concurrent_edit_is_a_conflict_on_both_writers(
    bucket_world: tuple[Cluster, Medium],
) -> None:
    cluster, _ = bucket_world
    a, b = cluster["a"], cluster["b"]
    key = unique_key("BUCKET_RACE")
    a.cli("set", key, "base", check=True)
    wait_until(lambda: b.config_value(key) == "base", timeout=CONVERGE, what="base value")

    # Neither writer syncs while both edit the key: each edit is made without seeing the other.
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
        lambda: a.config_value(key) == b.config_value(key) == cluster["c"].config_value(key),
        timeout=CONVERGE,
        what="one winner everywhere",
    )
    winner = a.config_value(key)
    assert winner in {"edit-on-a", "edit-on-b"}
    wait_until(
        lambda: open_conflicts(a, key) == 1 and open_conflicts(b, key) == 1,
        timeout=CONVERGE,
        what="the conflict is kept on both writers",
    )
    for node in (a, b):
        listed = json.loads(node.cli("conflicts", "--json", check=True).stdout)
        (mine,) = [item for item in listed if item["key"] == key]
        assert mine["model"] == SYSTEM_CONFIG and mine["status"] == "open"
    # Later cycles neither flip the winner nor record the conflict again.
    wait_cycles(a, BUCKET_PEER, after=last_run_id(a), count=2, timeout=CONVERGE)
    wait_cycles(b, BUCKET_PEER, after=last_run_id(b), count=2, timeout=CONVERGE)
    assert a.config_value(key) == b.config_value(key) == winner
    assert open_conflicts(a, key) == 1 and open_conflicts(b, key) == 1


def test_three_nodes_converge_through_one_bucket(bucket_world: tuple[Cluster, Medium]) -> None:
    cluster, _ = bucket_world
    keys = {node.name: unique_key(f"BUCKET_THREE_{node.name}") for node in cluster}
    for node in cluster:
        node.cli("set", keys[node.name], f"written-on-{node.name}", check=True)

    def everywhere() -> bool:
        return all(
            node.config_value(keys[writer]) == f"written-on-{writer}"
            for node in cluster
            for writer in keys
        )

    wait_until(everywhere, timeout=CONVERGE, what="every node has every node's key")

    c = cluster["c"]
    c.cli("set", keys["a"], "changed-on-c", check=True)
    c.cli("delete", keys["b"], check=True)
    wait_until(
        lambda: all(
            node.config_value(keys["a"]) == "changed-on-c" and not node.config_exists(keys["b"])
            for node in cluster
        ),
        timeout=CONVERGE,
        what="c's edit and delete reach a and b",
    )


def test_a_user_made_on_a_logs_in_on_b_and_bs_new_password_reaches_a(
    bucket_world: tuple[Cluster, Medium],
) -> None:
    cluster, medium = bucket_world
    a, b = cluster["a"], cluster["b"]
    username = unique_key("bucketuser").lower()
    password = "CANARY-bucket-user-password-1"
    new_password = "CANARY-bucket-user-password-2"

    create_superuser(a, username, password)
    assert admin_login(a, username, password)
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

    holding = medium.holding(username)
    assert holding, "the user's changes are in the bucket"
    for name, data in holding.items():
        text = readable(data)
        assert b"pbkdf2_sha256$" not in text, name  # only ciphertext of the password hash
        assert password.encode() not in text and new_password.encode() not in text, name


def test_templates_are_backed_up_to_the_bucket_but_never_read_back(
    bucket_world: tuple[Cluster, Medium],
) -> None:
    cluster, medium = bucket_world
    a, b = cluster["a"], cluster["b"]
    rows = json.loads(a.cli("mode", "show", "--json", check=True).stdout)["strategies"]
    assert rows["templates"]["strategy"] == "backup_only"

    slug = unique_key("bucket_template").lower().replace("_", "-")
    body = f"template body {slug}"
    template_write(a, slug, body)
    # A critical change written after it: once b has it, b has read a's segments past the
    # template's (each writer's segments are read in order).
    marker = unique_key("BUCKET_AFTER_TEMPLATE")
    a.cli("set", marker, "x", check=True)

    wait_until(lambda: medium.holding(body), timeout=CONVERGE, what="the template in the bucket")
    wait_until(lambda: b.config_value(marker) == "x", timeout=CONVERGE, what="marker reaches b")
    wait_cycles(b, BUCKET_PEER, after=last_run_id(b), count=2, timeout=CONVERGE)

    assert template_body(a, slug) == body
    for node in (b, cluster["c"]):
        assert template_body(node, slug) is None, node.name
        assert received_from(node, "testapp.template", slug) is None, node.name


def test_a_damaged_segment_is_refused_and_reported_and_the_rest_converges(
    bucket_world: tuple[Cluster, Medium],
) -> None:
    cluster, medium = bucket_world
    a, b, c = cluster["a"], cluster["b"], cluster["c"]
    damaged_key = unique_key("BUCKET_DAMAGED")
    other_key = unique_key("BUCKET_FROM_C")

    b.stop("celery")  # b reads nothing until a's new segment is damaged
    try:
        a.cli("set", damaged_key, "in-the-damaged-segment", check=True)
        holding = wait_until(
            lambda: {k: v for k, v in medium.holding(damaged_key).items() if "/segments/" in k},
            timeout=CONVERGE,
            what="a's segment",
        )
        assert len(holding) == 1, sorted(holding)
        ((segment, original),) = holding.items()
        assert f"/segments/{a.node_id}/" in segment, f"{segment} is a segment of a's"
        # Still well-formed, but not what a wrote: only its checksum can tell.
        damaged = original.replace(b"in-the-damaged-segment", b"in-a-tampered-segment")
        assert damaged != original
        medium.put(segment, damaged)
        c.cli("set", other_key, "from-c", check=True)
    finally:
        b.start_celery()

    wait_until(lambda: b.config_value(other_key) == "from-c", timeout=CONVERGE, what="c -> b")

    def reported() -> dict[str, object] | None:
        report = json.loads(b.cli("status", "--json", check=True).stdout)
        peer = next(p for p in report["peers"] if p["name"] == BUCKET_PEER)
        return peer if peer["last_run_ok"] is False and DAMAGE.search(peer["last_error"]) else None

    peer = wait_until(reported, timeout=CONVERGE, what="b's status reports the damage")
    assert segment in str(peer["last_error"]), "the reason names the damaged segment"
    assert CANARY_SECRET not in json.dumps(peer)
    failed = wait_cycles(b, BUCKET_PEER, after=last_run_id(b), count=2, ok=False)
    assert all(not run.ok and DAMAGE.search(run.error) for run in failed), failed
    assert not b.config_exists(damaged_key), "nothing of the damaged segment is applied"
    assert not c.config_exists(damaged_key) or c.config_value(damaged_key) != (
        "in-a-tampered-segment"
    )

    medium.put(segment, original)
    wait_until(
        lambda: b.config_value(damaged_key) == "in-the-damaged-segment",
        timeout=CONVERGE,
        what="b converges once the segment is repaired",
    )

    def healthy() -> bool:
        report = json.loads(b.cli("status", "--json", check=True).stdout)
        peer = next(p for p in report["peers"] if p["name"] == BUCKET_PEER)
        return peer["last_run_ok"] is True

    wait_until(healthy, timeout=CONVERGE, what="b's bucket runs succeed again")
