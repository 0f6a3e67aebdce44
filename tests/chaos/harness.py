"""Build a chaos world (nodes wired through the proxy over every transport) and judge a run.

Topology, for nodes ``a, b, c, …`` (three at least):

- ``c`` knows only the shared media: the bucket (with ``b``) and the external database (with
  ``a``); every other node is an HTTP peer of every other (``a - b`` for three nodes);
- so each transport carries changes no other one does (``a``'s reach ``c`` only through the
  database, ``b``'s only through the bucket, ``a``'s reach ``b`` only over HTTP): a run converges
  only if each works, under its faults.

Every link crosses the proxy: node ``a``'s peer ``b`` is the URL of link ``a>b`` (in network
namespaces, an address on that link's veth in ``b``'s namespace; else ``127.0.0.1``), the S3
endpoint and the external database URL of a node are its own links' ports; the workload's REST
writes take each node's client link (``client>a``). Where the nodes run in namespaces
(:func:`chaos_world`), a partition takes a veth down; the proxy adds delays, drops, resets and
lost acknowledgements.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from multinode import Cluster
from multinode.media import external_database, s3_server
from tests.chaos import netns
from tests.chaos.faults import SKEW_TOLERANCE_MS, Budget, Schedule, World, skew_holds
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
    skew_beyond: tuple[int, ...] | None = None
    """Seeds whose run puts a clock beyond the tolerated skew (:meth:`Schedule.skew_beyond`:
    a node restarted once more at the heal, a run converging up to ``SKEW_BEYOND_MARGIN_MS``
    later); ``None``: every seed."""

    def skews_beyond(self, seed: int) -> bool:
        return self.skew_beyond is None or seed in self.skew_beyond

    @classmethod
    def from_env(
        cls,
        *,
        seeds: tuple[int, ...],
        rounds: int,
        nodes: int,
        skew_beyond: tuple[int, ...] | None = None,
    ) -> Config:
        """``CHAOS_SEED`` (comma-separated), ``CHAOS_ROUNDS``, ``CHAOS_NODES`` override; seeds
        from ``CHAOS_SEED`` all skew beyond tolerance."""
        listed = os.environ.get("CHAOS_SEED", "").strip()
        if listed == "random":
            seeds = (random.SystemRandom().randrange(1, 10**9),)
        elif listed:
            seeds = tuple(int(s) for s in listed.split(",") if s.strip())
        if listed:
            skew_beyond = None
        rounds = int(os.environ.get("CHAOS_ROUNDS", "") or rounds)
        nodes = max(3, int(os.environ.get("CHAOS_NODES", "") or nodes))
        return cls(seeds=seeds, rounds=rounds, nodes=nodes, skew_beyond=skew_beyond)


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    netloc[-1] = host
    return urlunsplit((parts.scheme, "@".join(netloc), parts.path, parts.query, parts.fragment))


def _endpoints(env: dict[str, str]) -> set[int]:
    """Ports on the loopback that a node with environment ``env`` connects to by itself: its
    database, Redis, broker, NATS (the shared media have links of their own)."""
    ports = set()
    for variable, default in DEFAULT_PORTS.items():
        parts = urlsplit(env.get(variable, ""))
        if parts.scheme and parts.hostname in ("127.0.0.1", "localhost"):
            ports.add(parts.port or default)
    return ports


DEFAULT_PORTS = {
    "DATABASE_URL": 5432,
    "REDIS_URL": 6379,
    "CELERY_BROKER_URL": 5672,
    "CONFIGSYNC_NATS_URL": 4222,
}


def _netns(stack: contextlib.ExitStack, names: list[str], links: list[tuple[str, str]]) -> Any:
    """The mesh of the nodes' namespaces, or the reason there is none (``CHAOS_NETNS=0``, not
    root, no ``ip netns``)."""
    if os.environ.get("CHAOS_NETNS", "1").strip() == "0":
        return "CHAOS_NETNS=0"
    try:
        return stack.enter_context(netns.mesh(names, links))
    except netns.Unavailable as exc:
        return str(exc)


@contextlib.contextmanager
def chaos_world(
    root: Path, *, nodes: int, node_env: dict[str, dict[str, str]] | None = None
) -> Iterator[World]:
    """A started cluster of ``nodes`` nodes over every transport, behind one proxy.

    Each node runs in a network namespace of its own (unless ``CHAOS_NETNS=0`` or namespaces
    cannot be made here: then on the root namespace's loopback, the proxy doing the cuts): its
    web server listens on 127.0.0.1 there, reached from the root namespace (the harness, the
    replays) by a forwarder on the same port; its peers reach it over the veth of their directed
    link, through the proxy (listening at the link's address in the node's namespace); and
    forwarders on its own loopback take it to PostgreSQL, Redis, the broker, the bucket and the
    external database of the root namespace. The workload's REST writes take a client link of
    the proxy per node. Namespaces, veths and processes go on any exit."""
    names = list(NAMES[:nodes])
    http = [n for n in names if n != MEDIA_ONLY]
    links = [(x, y) for i, x in enumerate(http) for y in http[i + 1 :]]
    with contextlib.ExitStack() as stack:
        proxy = Proxy()
        stack.callback(proxy.close)
        found = _netns(stack, names, links)
        mesh = found if isinstance(found, netns.Mesh) else None
        spaces = mesh.namespaces if mesh is not None else {}
        server = stack.enter_context(s3_server(log=root / "moto.log"))
        db = stack.enter_context(external_database("cs_chaos_ext"))
        bucket = server.create_bucket()
        s3_port = urlsplit(server.endpoint_url).port or 80
        pg = urlsplit(db)
        cluster = Cluster(
            root,
            names=names,
            links=links,
            extra_env={"CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS": str(SKEW_TOLERANCE_MS // 1000)},
            node_env=node_env,
            netns={name: (spaces[name], "127.0.0.1") for name in names} if mesh else None,
        )
        world = World(cluster=cluster, proxy=proxy, http_links=[], mesh=mesh)
        world.netns_note = "" if mesh else str(found)
        world.external_database = db
        for x, y in links:
            for src, dst in ((x, y), (y, x)):
                place: dict[str, Any] = {}
                if mesh is not None:
                    place = {
                        "host": mesh.address(src, dst),
                        "listen_ns": spaces[dst],
                        "target_ns": spaces[dst],
                    }
                proxy.add(f"{src}>{dst}", ("127.0.0.1", cluster[dst].port), capture=True, **place)
                world.http_links.append(f"{src}>{dst}")
        for name in names:
            node = cluster[name]
            inside = {"listen_ns": spaces[name]} if mesh else {}
            if mesh is not None:
                for port in sorted(_endpoints(node.env)):
                    proxy.add(f"service:{port}@{name}", ("127.0.0.1", port), port=port, **inside)
                proxy.add(
                    f"web@{name}",
                    ("127.0.0.1", node.port),
                    port=node.port,
                    target_ns=spaces[name],
                )
                hosts = node.env["DJANGO_ALLOWED_HOSTS"].split(",")
                hosts += [mesh.address(src, name) for src in http if (src, name) in mesh.links]
                node.env["DJANGO_ALLOWED_HOSTS"] = ",".join(dict.fromkeys(hosts))
            client = proxy.add(
                f"client>{name}",
                ("127.0.0.1", node.port),
                target_ns=spaces.get(name, ""),
            )
            world.clients[name] = client.name
            peers = [
                f"{dst}={proxy.links[f'{name}>{dst}'].url}"
                for dst in http
                if f"{name}>{dst}" in proxy.links
            ]
            node.env["CONFIGSYNC_PEERS"] = ",".join(peers)
            media = []
            if name in ("b", MEDIA_ONLY):
                link = proxy.add(f"bucket@{name}", ("127.0.0.1", s3_port), **inside)
                node.env.update(server.env(bucket))
                node.env["CONFIGSYNC_R2_ENDPOINT_URL"] = link.url
                world.media_links.setdefault("bucket", []).append(link.name)
                media.append("R2")
            if name in ("a", MEDIA_ONLY):
                link = proxy.add(
                    f"database@{name}", (pg.hostname or "127.0.0.1", pg.port or 5432), **inside
                )
                node.env["EXTERNAL_DATABASE_URL"] = _with_port(db, link.port)
                world.media_links.setdefault("database", []).append(link.name)
            node.env["CONFIGSYNC_DEPLOYMENT_MODE"] = (
                "LOCAL_EXTERNAL_R2" if media else "LOCAL_EXTERNAL"
            )
        started = run_cluster(cluster)
        stack.callback(started.close)  # first out: the processes go before their namespaces
        world.cluster = next(started)
        if world.netns_note:
            print(f"chaos: nodes without network namespaces ({world.netns_note}): proxy cuts")
        yield world


def run_seed(world: World, *, seed: int, config: Config) -> Workload:
    """One run on ``world``: the schedule and the workload from ``seed``, then :func:`converge`."""
    workload = Workload(world.nodes, seed=seed, clients=world.client_links())
    budget = Budget(
        rounds=config.rounds,
        ops_per_round=config.ops_per_round,
        max_skew_ms=config.max_skew_ms,
        skew_beyond=config.skews_beyond(seed),
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
    """Every node ends with the same state, the model's; :class:`ChaosFailure` otherwise.

    Writes some peer held in quarantine for clock skew are marked so in the history
    (``held_for_skew``); one still held once the nodes agree is a failure too. The verdict
    (the model's counts) joins the history."""
    interval = world.cluster.interval
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    stamps = {op.hlc for op in workload.history.ops if op.hlc}

    def settled() -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
        holds = {hlc: at for hlc, at in skew_holds(world).items() if hlc in stamps}
        return workload.states(), holds

    def still_held(holds: dict[str, dict[str, str]]) -> list[str]:
        return [f"{hlc} on {n}" for hlc, at in holds.items() for n, s in at.items() if s == "open"]

    found, holds = settled()
    while (len(set(digests(found).values())) != 1 or still_held(holds)) and (
        time.monotonic() < deadline
    ):
        time.sleep(interval)
        found, holds = settled()
    time.sleep(2 * interval)  # two more intervals: nothing may move any more
    found, holds = settled()
    history = workload.history
    history.ops = [replace(op, held_for_skew=op.hlc in holds) for op in history.ops]
    expectation = history.expectation()
    applied = sum(status == "applied" for at in holds.values() for status in at.values())
    history.note(
        f"verdict: {expectation.verdict()}; quarantine rows for skew: "
        f"{sum(map(len, holds.values()))}, applied {applied}"
    )
    problems: list[str] = []
    seen = digests(found)
    if len(set(seen.values())) != 1:
        problems.append(f"nodes differ: {seen}")
    problems += [f"held for clock skew and never applied: {held}" for held in still_held(holds)]
    for name, state in found.items():
        for problem in expectation.check(state):
            problems.append(f"node {name}: {problem}")
    if problems:
        expected = digest(dict(expectation.state))
        raise ChaosFailure(
            _report(workload, f"model digest {expected}\n" + "\n".join(problems[:40]))
        )
    history.note(f"converged: digest {next(iter(seen.values()))}")
