"""Build a chaos world (nodes wired through the proxy over every transport) and judge a run.

Topology, for nodes ``a, b, c, …`` (three at least):

- ``c`` knows only the shared media: the bucket (with ``b``) and the external database (with
  ``a``); every other node is an HTTP peer of every other (``a - b`` for three nodes);
- so each transport carries changes no other one does (``a``'s reach ``c`` only through the
  database, ``b``'s only through the bucket, ``a``'s reach ``b`` only over HTTP): a run converges
  only if each works, under its faults.

Every link crosses the proxy: node ``a``'s peer ``b`` is ``http://127.0.0.1:<port of a>b>``, the
S3 endpoint and the external database URL of a node are its own links' ports.

:func:`converge` heals, waits until every node shows the same state, waits two sync intervals
more, and checks every node against the model (:mod:`tests.chaos.model`);
:class:`ChaosFailure` carries the seed and the history, printed to re-run it.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from multinode import Cluster
from multinode.media import external_database, s3_server
from tests.chaos.faults import Budget, Schedule, World
from tests.chaos.model import digest
from tests.chaos.proxy import Proxy
from tests.chaos.workload import Workload, digests
from tests.support.multinode import run_cluster

NAMES = "abcdefgh"
CONVERGE_TIMEOUT = 180.0
MEDIA_ONLY = "c"


class ChaosFailure(AssertionError):
    """The nodes did not converge to the model: the message holds the seed and the history."""


@dataclass(frozen=True)
class Config:
    seeds: tuple[int, ...]
    rounds: int
    nodes: int
    ops_per_round: int = 8
    max_skew_ms: int = 600_000

    @classmethod
    def from_env(cls, *, seeds: tuple[int, ...], rounds: int, nodes: int) -> Config:
        """``CHAOS_SEED`` (comma-separated), ``CHAOS_ROUNDS``, ``CHAOS_NODES`` override."""
        listed = os.environ.get("CHAOS_SEED", "").strip()
        if listed == "random":
            seeds = (random.SystemRandom().randrange(1, 10**9),)
        elif listed:
            seeds = tuple(int(s) for s in listed.split(",") if s.strip())
        rounds = int(os.environ.get("CHAOS_ROUNDS", "") or rounds)
        nodes = max(3, int(os.environ.get("CHAOS_NODES", "") or nodes))
        return cls(seeds=seeds, rounds=rounds, nodes=nodes)


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    netloc[-1] = host
    return urlunsplit((parts.scheme, "@".join(netloc), parts.path, parts.query, parts.fragment))


@contextlib.contextmanager
def chaos_world(
    root: Path, *, nodes: int, node_env: dict[str, dict[str, str]] | None = None
) -> Iterator[World]:
    """A started cluster of ``nodes`` nodes over every transport, behind one proxy."""
    names = list(NAMES[:nodes])
    http = [n for n in names if n != MEDIA_ONLY]
    links = [(x, y) for i, x in enumerate(http) for y in http[i + 1 :]]
    proxy = Proxy()
    try:
        with s3_server(log=root / "moto.log") as server, external_database("cs_chaos_ext") as db:
            bucket = server.create_bucket()
            s3_port = urlsplit(server.endpoint_url).port or 80
            pg = urlsplit(db)
            cluster = Cluster(
                root,
                names=names,
                links=links,
                extra_env={"CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS": "1300"},
                node_env=node_env,
            )
            world = World(cluster=cluster, proxy=proxy, http_links=[])
            for x, y in links:
                for src, dst in ((x, y), (y, x)):
                    proxy.add(f"{src}>{dst}", ("127.0.0.1", cluster[dst].port))
                    world.http_links.append(f"{src}>{dst}")
            for name in names:
                node = cluster[name]
                peers = [
                    f"{dst}={proxy.links[f'{name}>{dst}'].url}"
                    for dst in http
                    if f"{name}>{dst}" in proxy.links
                ]
                node.env["CONFIGSYNC_PEERS"] = ",".join(peers)
                media = []
                if name in ("b", MEDIA_ONLY):
                    link = proxy.add(f"bucket@{name}", ("127.0.0.1", s3_port))
                    node.env.update(server.env(bucket))
                    node.env["CONFIGSYNC_R2_ENDPOINT_URL"] = link.url
                    world.media_links.setdefault("bucket", []).append(link.name)
                    media.append("R2")
                if name in ("a", MEDIA_ONLY):
                    link = proxy.add(
                        f"database@{name}", (pg.hostname or "127.0.0.1", pg.port or 5432)
                    )
                    node.env["EXTERNAL_DATABASE_URL"] = _with_port(db, link.port)
                    world.media_links.setdefault("database", []).append(link.name)
                node.env["CONFIGSYNC_DEPLOYMENT_MODE"] = (
                    "LOCAL_EXTERNAL_R2" if media else "LOCAL_EXTERNAL"
                )
            for started in run_cluster(cluster):
                world.cluster = started
                yield world
    finally:
        proxy.close()


def run_seed(world: World, *, seed: int, config: Config) -> Workload:
    """One run on ``world``: the schedule and the workload from ``seed``, then :func:`converge`."""
    workload = Workload(world.nodes, seed=seed)
    budget = Budget(
        rounds=config.rounds, ops_per_round=config.ops_per_round, max_skew_ms=config.max_skew_ms
    )
    schedule = Schedule(
        world,
        seed=seed,
        budget=budget,
        prefix=workload.setting_prefix,
        keys=tuple(workload.settings),
    )
    try:
        schedule.run(workload.step, workload.history.note)
        # At least one delete of a record that exists where it is made, whatever the draw.
        for node in world.cluster:
            existing = [key for key in workload.settings if node.config_exists(key)]
            if existing:
                workload.step(node.name, key=existing[0], delete=True)
                break
        for line in world.heal():
            workload.history.note(line)
        workload.resolve_unacked()
        converge(world, workload)
    except ChaosFailure:
        raise
    except Exception as exc:
        raise ChaosFailure(_report(workload, f"the run broke: {exc!r}")) from exc
    return workload


def _report(workload: Workload, problem: str) -> str:
    seed = workload.history.seed
    return (
        f"chaos run FAILED with seed {seed}: {problem}\n"
        f"re-run it: CHAOS_SEED={seed} make chaos\n"
        f"{workload.history.text()}"
    )


def converge(world: World, workload: Workload) -> None:
    """Every node ends with the same state, the model's; :class:`ChaosFailure` otherwise."""
    interval = world.cluster.interval
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    found = workload.states()
    while len(set(digests(found).values())) != 1 and time.monotonic() < deadline:
        time.sleep(interval)
        found = workload.states()
    time.sleep(2 * interval)  # two more intervals: nothing may move any more
    found = workload.states()
    expectation = workload.history.expectation()
    problems: list[str] = []
    seen = digests(found)
    if len(set(seen.values())) != 1:
        problems.append(f"nodes differ: {seen}")
    for name, state in found.items():
        for problem in expectation.check(state):
            problems.append(f"node {name}: {problem}")
    if problems:
        expected = digest(dict(expectation.state))
        raise ChaosFailure(
            _report(workload, f"model digest {expected}\n" + "\n".join(problems[:40]))
        )
    workload.history.note(f"converged: digest {next(iter(seen.values()))}")
