"""Running a harness cluster from a pytest fixture (see the ``multinode`` package)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from multinode import Cluster, wait_until
from multinode.cluster import PYTHON, REPO, Node
from multinode.media import S3Server, readable

live_clusters: list[Cluster] = []
"""The clusters started by :func:`run_cluster` and not yet destroyed, in this process."""


def run_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """Start ``cluster``, yield it, and always destroy it; its logs join a failing test's report.

    For module fixtures: ``yield from run_cluster(Cluster(...))``. Per-node settings go in the
    cluster's ``node_env`` (or ``cluster[name].env``) before this starts it.
    """
    live_clusters.append(cluster)
    try:
        cluster.start()
        yield cluster
    finally:
        live_clusters.remove(cluster)
        cluster.destroy()


# --- helpers of the shared-media tests (bucket, external database, mode switches) -------------

TESTAPP_SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.testapp.node_settings"}
"""``node_env`` extras of a node that carries the test app (data types projects, templates)."""


def admin_login(node: Node, username: str, password: str) -> bool:
    """A real login through ``node``'s admin login form; whether it gave an admin session."""
    with requests.Session() as session:
        login = f"{node.base_url}/admin/login/"
        session.get(login, timeout=10)
        response = session.post(
            login,
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": session.cookies.get("csrftoken", ""),
                "next": "/admin/",
            },
            headers={"Referer": login},
            timeout=10,
        )
        response.raise_for_status()
        if "sessionid" not in session.cookies:
            return False
        return session.get(f"{node.base_url}/admin/", timeout=10).url.rstrip("/").endswith("/admin")


def create_superuser(node: Node, username: str, password: str) -> None:
    """``manage.py createsuperuser --noinput`` on ``node``, as an operator would."""
    made = subprocess.run(
        [
            PYTHON,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            f"{username}@example.invalid",
        ],
        cwd=REPO,
        env={**node.env, "DJANGO_SUPERUSER_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr


def set_password(node: Node, username: str, password: str) -> None:
    node.shell(
        "from django.contrib.auth.models import User\n"
        f"user = User.objects.get(username={username!r})\n"
        f"user.set_password({password!r})\n"
        "user.save()\n"
    )


@dataclass(frozen=True)
class Run:
    """One ``SyncRun`` row of a node, with its peer's name."""

    id: int
    peer: str
    ok: bool
    error: str
    pulled: int
    pushed: int
    finished: bool


def sync_runs(node: Node, *, after: int = 0, peer: str | None = None) -> list[Run]:
    """``node``'s sync runs with an id above ``after`` (optionally with one peer), oldest first."""
    query = (
        "SELECT r.id, p.name, r.ok, r.error, r.pulled, r.pushed, r.finished_at IS NOT NULL"
        " FROM configsync_syncrun r JOIN configsync_peer p ON p.id = r.peer_id WHERE r.id > %s"
    )
    params: list[object] = [after]
    if peer is not None:
        query += " AND p.name = %s"
        params.append(peer)
    rows = node.sql(query + " ORDER BY r.id", params)
    return [
        Run(int(i), str(n), bool(ok), str(e or ""), int(pl), int(ps), bool(f))
        for i, n, ok, e, pl, ps, f in rows
    ]


def seeded_status(node: Node, *, timeout: float = 120) -> dict[str, Any]:
    """``configsync status --json`` of ``node`` once it lists peers: the beat seeds them from the
    settings at its first tick, which a command run right after the node started may precede."""

    def report() -> dict[str, Any] | None:
        found: dict[str, Any] = json.loads(node.cli("status", "--json", check=True).stdout)
        return found if found["peers"] else None

    return wait_until(report, timeout=timeout, what=f"node {node.name}'s peers seeded")


def last_run_id(node: Node) -> int:
    rows = node.sql("SELECT COALESCE(MAX(id), 0) FROM configsync_syncrun")
    return int(rows[0][0])


def wait_cycles(
    node: Node, peer: str, *, after: int, count: int = 2, ok: bool = True, timeout: float = 120
) -> list[Run]:
    """Wait until ``node`` finished ``count`` runs with ``peer`` (successful ones when ``ok``)
    after run id ``after``; those runs. What "the next cycles did" is then read from the node."""

    def done() -> list[Run]:
        runs = [
            run
            for run in sync_runs(node, after=after, peer=peer)
            if run.finished and (run.ok or not ok)
        ]
        return runs if len(runs) >= count else []

    return wait_until(done, timeout=timeout, what=f"{count} cycles of {node.name} with {peer}")


def open_conflicts(node: Node, key: str) -> int:
    rows = node.sql(
        "SELECT COUNT(*) FROM configsync_conflict WHERE natural_key = %s AND status = %s",
        [key, "open"],
    )
    return int(rows[0][0])


def template_write(node: Node, slug: str, body: str) -> None:
    """Create or update the test app's template ``slug`` on ``node`` (a local write)."""
    node.shell(
        "from tests.testapp.models import Template\n"
        f"Template.objects.update_or_create(slug={slug!r}, defaults={{'body': {body!r}}})\n"
    )


def template_body(node: Node, slug: str) -> str | None:
    """The body of template ``slug`` on ``node``; ``None`` when it has none."""
    rows = node.sql("SELECT body FROM testapp_template WHERE slug = %s", [slug])
    return str(rows[0][0]) if rows else None


def received_from(node: Node, label: str, key: str) -> str | None:
    """Where ``node``'s current version of record ``label``/``key`` came from (``""``: written
    here; a node or medium id otherwise; ``None``: no such record)."""
    rows = node.sql(
        "SELECT received_from FROM configsync_replicatedrecord"
        " WHERE model_label = %s AND natural_key = %s",
        [label, key],
    )
    return str(rows[0][0] or "") if rows else None


class Medium:
    """A cluster's shared bucket: its server and name, and what it holds."""

    def __init__(self, server: S3Server, bucket: str) -> None:
        self.server = server
        self.bucket = bucket

    def objects(self) -> dict[str, bytes]:
        return self.server.objects(self.bucket)

    def holding(self, needle: str) -> dict[str, bytes]:
        """The objects whose (decompressed) bytes contain ``needle``."""
        return {
            key: data for key, data in self.objects().items() if needle.encode() in readable(data)
        }

    def put(self, key: str, data: bytes) -> None:
        """Overwrite (or create) object ``key`` with ``data``."""
        self.server.client().put_object(Bucket=self.bucket, Key=key, Body=data)
