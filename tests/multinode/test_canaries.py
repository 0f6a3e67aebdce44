"""Secret-leak canaries across real nodes: what nodes log at DEBUG and what their brokers hold.

Two nodes, each a web server, a Celery worker and Celery beat as three processes of their own,
all logging at DEBUG (``DJANGO_LOG_LEVEL``; the worker's own ``--loglevel`` too) to files.
Canaries (``tests.support.canaries``) are stored on ``a`` through the command line (argument and
standard input), REST with a write key, the admin's form and the provider command; they sync to
``b``; both nodes run sync cycles, triggered and on their beat; ``b`` reveals one to a caller
with the reveal scope (an answer that must show it: the control). Then no web, worker or beat
log file of either node, no key of either node's Redis broker (or file of its embedded broker),
and no audit row holds a canary in any form (``tests/test_canaries.py`` covers the other sinks
in one process).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from multinode import Cluster, unique_key, wait_until
from multinode.cluster import CELERY, Node, free_port
from tests.support.canaries import CanarySet, assert_no_canary
from tests.support.multinode import last_run_id, live_clusters, wait_cycles

pytestmark = pytest.mark.multinode

CONVERGE = 90.0
PROCESSES = ("web", "worker", "beat")
CANARIES = CanarySet()
ENV_KEY = "CANARY_ENV_API_KEY"


def _start(node: Node) -> None:
    """Web, worker and beat as three processes, each logging to its own file at DEBUG."""
    node.start_web()
    common = ["-A", "settings", "--loglevel=DEBUG"]
    node._spawn(
        "worker",
        [
            CELERY,
            *common[:2],
            "worker",
            common[2],
            "--pool=threads",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname={node.name}@%h",
        ],
    )
    node._spawn(
        "beat",
        [
            CELERY,
            *common[:2],
            "beat",
            common[2],
            "--schedule",
            str(node.directory / "var" / "celerybeat-schedule"),
        ],
    )


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    env_file = root / "a.env"
    env_file.write_text(f"{ENV_KEY}={CANARIES.make('env-file', special=True)}\n")
    env_file.chmod(0o600)
    cluster = Cluster(
        root,
        names=["a", "b"],
        extra_env={"DJANGO_LOG_LEVEL": "DEBUG"},
        # a keeps a .env file in sync, and tells a callback nobody answers (its task retries).
        node_env={
            "a": {
                "CONFIGSYNC_ENV_FILE": str(env_file),
                "CONFIGSYNC_DATA_CALLBACK_URL": f"http://127.0.0.1:{free_port()}/callback",
            }
        },
    )
    live_clusters.append(cluster)
    try:
        cluster.migrate()
        for node in cluster:
            _start(node)
        for node in cluster:
            node.wait_ready()
        yield cluster
    finally:
        live_clusters.remove(cluster)
        cluster.destroy()


def _api_key(node: Node, *flags: str) -> requests.Session:
    name = unique_key("canary_key").lower()
    key = node.cli("apikey", "create", name, *flags, check=True).stdout.strip().splitlines()[-1]
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {key}"
    return session


def _broker_contents(node: Node) -> Iterator[tuple[str, bytes]]:
    if node.redis_url:
        import redis

        from tests.test_canaries import _redis_value

        client = redis.Redis.from_url(node.redis_url)
        try:
            for name in client.scan_iter(count=1000):
                where = f"node {node.name} Redis key {name.decode(errors='replace')}"
                yield where, _redis_value(client, name)
        finally:
            client.close()
    else:
        folder = node.directory / "var" / "celery"
        for file in folder.rglob("*"):
            if file.is_file():
                yield f"node {node.name} broker file {file.relative_to(folder)}", file.read_bytes()


@contextlib.contextmanager
def _redis_traffic(cluster: Cluster) -> Iterator[list[tuple[str, str]]]:
    """Every command the nodes send their Redis DBs (broker publishes included), through
    ``MONITOR``: ``(node name, command as Redis prints it)``. Empty without Redis."""
    seen: list[tuple[str, str]] = []
    dbs = {int(urlsplit(n.redis_url).path.lstrip("/")): n.name for n in cluster if n.redis_url}
    if not dbs:
        yield seen
        return
    import redis

    client = redis.Redis.from_url(next(n.redis_url for n in cluster if n.redis_url))
    monitor: Any = client.monitor()
    monitor.__enter__()

    def listen() -> None:
        with contextlib.suppress(Exception):  # ends when the connection is closed below
            while True:
                command = monitor.next_command()
                if command["db"] in dbs:
                    seen.append((dbs[command["db"]], command["command"]))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        monitor.connection.disconnect()
        thread.join(timeout=10)
        client.close()


def test_canaries_stored_on_a_and_synced_to_b_leak_nowhere(nodes: Cluster) -> None:
    with _redis_traffic(nodes) as traffic:
        _plant_sync_and_scan(nodes, traffic)
    for node, command in traffic:
        assert_no_canary(command, where=f"node {node}: Redis command {command.split(' ', 1)[0]}")
    if any(node.redis_url for node in nodes):
        published = [c for _, c in traffic if c.upper().startswith(("LPUSH", "RPUSH"))]
        assert published, "MONITOR saw no message published to the broker"


def _plant_sync_and_scan(nodes: Cluster, traffic: list[tuple[str, str]]) -> None:
    a, b = nodes["a"], nodes["b"]
    canaries = CANARIES
    keys = {
        "argv": unique_key("CANARY_ARGV"),
        "stdin": unique_key("CANARY_STDIN"),
        "rest": unique_key("CANARY_REST"),
        "admin": unique_key("CANARY_ADMIN"),
    }
    provider = unique_key("canary_prov").lower().replace("_", "-")

    a.cli("set", keys["argv"], canaries.make("cli-argv", special=True), "--sensitive", check=True)
    a.cli(
        "set",
        keys["stdin"],
        "-",
        "--sensitive",
        stdin=canaries.make("cli-stdin") + "\n",
        check=True,
    )
    a.cli(
        "provider",
        "set",
        provider,
        "--kind",
        "openai",
        "--api-key",
        canaries.make("cli-provider"),
        check=True,
    )
    writer = _api_key(a, "--write")
    answer = writer.post(
        f"{a.base_url}/api/v1/configs/system/",
        json={
            "key": keys["rest"],
            "value": canaries.make("rest", special=True),
            "is_sensitive": True,
        },
        timeout=15,
    )
    assert answer.status_code == 201, answer.text
    refused = writer.post(
        f"{a.base_url}/api/v1/configs/system/",
        json={
            "key": "CANARY_BAD",
            "value": canaries.make("rest-invalid"),
            "value_type": "int",
            "is_sensitive": True,
        },
        timeout=15,
    )
    assert refused.status_code == 400
    assert_no_canary(refused.content, where="node a: REST 400", canaries=canaries)
    answer = a.post(
        "/admin/configsync/systemconfig/add/",
        data={
            "key": keys["admin"],
            "value_type": "str",
            "value": canaries.make("admin"),
            "is_sensitive": "on",
        },
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:2000]
    password = canaries.make("admin-password", special=True)
    username = unique_key("canary_user").lower()
    answer = a.post(
        "/admin/auth/user/add/",
        data={
            "username": username,
            "usable_password": "true",
            "password1": password,
            "password2": password,
        },
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:2000]
    keys["env"] = ENV_KEY  # from a's .env file, imported by its bridge

    # Synced to b (as tokens), on push and on the beat; more cycles, triggered and scheduled.
    for key in keys.values():
        wait_until(lambda key=key: b.config_exists(key), timeout=CONVERGE, what=f"{key} on b")
    wait_until(
        lambda: b.sql("SELECT 1 FROM providers_aiproviderconfig WHERE name = %s", [provider]),
        timeout=CONVERGE,
        what="provider on b",
    )
    wait_until(
        lambda: b.sql("SELECT 1 FROM auth_user WHERE username = %s", [username]),
        timeout=CONVERGE,
        what="user on b",
    )
    for key in keys.values():  # stored on b as tokens: the scans below have something to miss
        ((sensitive, token),) = b.sql(
            "SELECT is_sensitive, secret_value FROM configsync_systemconfig WHERE key = %s", [key]
        )
        assert sensitive and str(token).startswith("enc1:"), key
    after = last_run_id(b)
    for node in (a, b):
        assert node.post("/api/v1/sync/trigger").status_code == 202
    wait_cycles(b, "a", after=after, count=2)

    # The control: b decrypts and reveals to a caller holding the reveal scope.
    revealed = _api_key(b, "--reveal-secrets").get(
        f"{b.base_url}/api/v1/configs/system/{keys['rest']}/?reveal=true", timeout=15
    )
    assert revealed.status_code == 200
    with pytest.raises(AssertionError, match="'rest'"):
        assert_no_canary(revealed.content, where="reveal", canaries=canaries)
    masked = writer.get(f"{a.base_url}/api/v1/configs/system/", timeout=15)
    assert_no_canary(masked.content, where="node a: REST list (write key)", canaries=canaries)

    for node in (a, b):
        for process in PROCESSES:
            text = node.log_path(process).read_bytes()
            assert b"DEBUG" in text, f"node {node.name}: {process} logged nothing at DEBUG"
            assert_no_canary(text, where=f"node {node.name} {process}.log", canaries=canaries)
        held = list(_broker_contents(node))
        assert held, f"node {node.name}: nothing found in the broker"
        for where, data in held:
            assert_no_canary(data, where=where, canaries=canaries)
        audit = repr(node.sql("SELECT * FROM configsync_auditevent")).encode()
        assert_no_canary(audit, where=f"node {node.name} audit trail", canaries=canaries)
    assert Path(a.log_path("web")).stat().st_size > 0
