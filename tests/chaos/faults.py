"""The fault schedule of a chaos run: what goes wrong, where and when, drawn from one seed.

A :class:`World` is a started cluster wired through the :class:`tests.chaos.proxy.Proxy` (each
HTTP peer link, the bucket's S3 server and the external database each behind a link of their
own). :class:`Schedule` draws, round by round, the faults to apply on it:

- link faults on the HTTP links (each direction on its own): cut (:meth:`World.set_link`: the
  link's veth taken down when the nodes run in network namespaces, else the proxy's cut), delay,
  drop, reset mid-response;
- a lost acknowledgement: a node's client link (the workload's REST writes) resets the writer
  after the node answered 2xx, so the write is committed though the writer saw a failure;
- a storage outage: the bucket's or the external database's links cut for the round;
- ``kill -9`` of a node's web process (with a write in flight: its acknowledgement is lost) or of
  its Celery worker with embedded beat, restarted a few operations later;
- clock skew: a node restarted with ``CONFIGSYNC_CLOCK_OFFSET_MS`` (up to ``max_skew_ms`` either
  way; the product's injectable clock, never the system clock);
- replayed push batches: captured signed ``POST /api/v1/sync/push`` requests sent again,
  duplicated and out of order;
- a forced tie (:func:`force_tie`): two partitioned nodes whose clocks both lag a timestamp they
  received write the same record at exactly the same HLC instant, so the node-id tie-break (and
  delete-beats-update) decides; drawn when the clocks allow it.

:meth:`World.heal` undoes them all: links clean, processes running, every node's clock offset
back within the signature window of the others (a node skewed further than that could never
talk to them again until a person fixed its clock, which is what healing means here).

- clock skew beyond tolerance (:meth:`Schedule.skew_beyond`, the first round's skew when the
  budget allows it): one node restarted with its clock further ahead of a peer's than
  ``CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS`` (``SKEW_TOLERANCE_MS`` here) allows; it writes, the peer
  holds those writes in quarantine for clock skew, its clock is healed with the rest, and the
  held writes apply once within the bound (no storage outage in that round: they travel over
  the media).

Where the nodes run in network namespaces (:mod:`tests.chaos.netns`, ``CHAOS_NETNS``) a partition
is a real one: the veth pair of the directed link goes down. The storage outages stay the proxy's
(the bucket and the external database are services of the root namespace).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from multinode import Cluster, Node, wait_until
from multinode.cluster import TEST_SYNC_SECRET
from tests.chaos.netns import Mesh
from tests.chaos.proxy import Proxy, replay, resign

SIGNATURE_WINDOW_MS = 300_000
"""``CONFIGSYNC_SIGNATURE_MAX_AGE_SECONDS``: two nodes further apart than this cannot sign to each
other; healing brings every offset within half of it."""

SKEW_TOLERANCE_MS = 1_300_000
"""``CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS`` of the harness's nodes: above twice the ordinary skew
(two nodes ±10 minutes apart still accept each other's timestamps)."""
SKEW_BEYOND_MARGIN_MS = 30_000
"""How far beyond the tolerance :meth:`Schedule.skew_beyond` puts a node's clock: its writes are
held for about this long after they are made."""


@dataclass
class World:
    """A running cluster, its proxy, and which links carry what."""

    cluster: Cluster
    proxy: Proxy
    http_links: list[str]
    """Directed HTTP links, ``"a>b"``: node a's requests to peer b."""
    media_links: dict[str, list[str]] = field(default_factory=dict)
    """Links per shared medium (``"bucket"``, ``"database"``): one per node using it."""
    offsets: dict[str, int] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=dict)
    """Node name -> its client link (the workload's REST writes; ``lose_ack`` faults)."""
    mesh: Mesh | None = None
    """The network namespaces and veth links of the nodes; ``None``: partitions are the proxy's."""
    netns_note: str = ""
    """Why the nodes run without namespaces (``CHAOS_NETNS=0``, not root, …), if they do."""
    external_database: str = ""
    """The URL of the external database the nodes share (read directly by checks)."""
    ahead: tuple[int, float] = (0, 0.0)
    """``(ms, monotonic time)``: how far ahead of real time a timestamp could be then, after a
    :meth:`Schedule.skew_beyond` (HLCs keep it); the ordinary skew keeps clear of it."""

    @property
    def nodes(self) -> dict[str, Node]:
        return dict(self.cluster.nodes)

    def client_links(self) -> dict[str, Any]:
        """Node name -> its client :class:`tests.chaos.proxy.Link` (for the workload)."""
        return {name: self.proxy.links[link] for name, link in self.clients.items()}

    def set_link(self, src: str, dst: str, *, up: bool) -> str:
        """HTTP link ``src>dst`` up or cut: its veth (namespaces) or the proxy's cut; what was
        done, as text."""
        if self.mesh is not None:
            self.proxy.set(f"{src}>{dst}", cut=False)
            self.mesh.set_link(src, dst, up=up)
            return f"link {src}>{dst}: veth {'up' if up else 'down'}"
        self.proxy.set(f"{src}>{dst}", cut=not up)
        return f"link {src}>{dst}: {'clean' if up else 'cut'} (proxy)"

    def cut(self, link: str, cut: bool = True) -> None:
        """Cut (or restore) a link by name: an HTTP link ``x>y`` (:meth:`set_link`) or a
        medium's (the proxy's cut)."""
        if link in self.http_links:
            src, dst = link.split(">")
            self.set_link(src, dst, up=not cut)
        else:
            self.proxy.set(link, cut=cut)

    def clear_links(self) -> None:
        """Every link clean (proxy faults off, veths up); clocks and processes as they are."""
        self.proxy.heal()
        if self.mesh is not None:
            for src, dst in self.mesh.links:
                self.mesh.set_link(src, dst, up=True)

    def ahead_ms(self) -> int:
        """How far ahead of real time a timestamp may be now (see :attr:`ahead`)."""
        lead, at = self.ahead
        return max(0, lead - int((time.monotonic() - at) * 1000))

    def restart(self, name: str, *, offset_ms: int | None = None) -> None:
        """Kill -9 every process of node ``name`` and start it again (with a new clock offset)."""
        node = self.cluster[name]
        node.kill(signal.SIGKILL)
        if offset_ms is not None:
            self.offsets[name] = offset_ms
            node.env["CONFIGSYNC_CLOCK_OFFSET_MS"] = str(offset_ms)
        node.start()

    def ensure_running(self) -> None:
        for node in self.cluster:
            if not (node.alive("web") and node.alive("celery")):
                node.kill(signal.SIGKILL)
                node.start()

    def heal(self) -> list[str]:
        """Undo every fault; what was done, as text."""
        done = ["heal: every link clean" + (" (veths up)" if self.mesh else "")]
        self.clear_links()
        for name, offset in sorted(self.offsets.items()):
            if abs(offset) > SIGNATURE_WINDOW_MS // 2:
                done.append(f"heal: node {name} clock offset {offset} ms -> 0")
                self.restart(name, offset_ms=0)
        self.ensure_running()
        return done


@dataclass(frozen=True)
class Budget:
    """How much happens in a run."""

    rounds: int = 3
    ops_per_round: int = 8
    max_skew_ms: int = 600_000
    skew_beyond: bool = True
    """Whether the run puts one node's clock beyond the tolerated skew
    (:meth:`Schedule.skew_beyond`)."""
    lose_acks: bool = True
    """Whether client links may lose the acknowledgements of committed writes."""


def skew_holds(world: World) -> dict[str, dict[str, str]]:
    """Changes the nodes hold or held in quarantine for clock skew: HLC -> node -> status
    (``open``, ``applied``, ``dropped``)."""
    found: dict[str, dict[str, str]] = {}
    query = "SELECT hlc, status FROM configsync_quarantinedchange WHERE reason LIKE %s"
    for node in world.cluster:
        for hlc, status in node.sql(query, ["clock skew%"]):
            found.setdefault(str(hlc), {})[node.name] = str(status)
    return found


def clock_of(node: Node) -> tuple[int, int]:
    """``node``'s HLC state ``(last_wall_ms, last_logical)``."""
    rows = node.sql("SELECT last_wall_ms, last_logical FROM configsync_nodeclock")
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def lagging(node: Node, offset_ms: int, *, margin_ms: int = 60_000) -> bool:
    """Whether ``node``'s HLC is ahead of its physical clock by ``margin_ms`` or more: its next
    local timestamps then take the HLC's wall time and only move the counter."""
    now = int(time.time() * 1000) + offset_ms
    return clock_of(node)[0] - now >= margin_ms


def _arrives(node: Node, hlc: str, *, timeout: float = 60.0) -> bool:
    """Whether a version stamped ``hlc`` reaches ``node`` within ``timeout`` seconds."""

    def there() -> bool:
        query = "SELECT 1 FROM configsync_replicatedrecord WHERE hlc = %s"
        return bool(node.sql(query, [hlc]))

    try:
        wait_until(there, timeout=timeout, what=f"{node.name} receives {hlc}")
    except TimeoutError:
        return False
    return True


def force_tie(
    world: World,
    step: Callable[..., Any],
    note: Callable[[str], None],
    *,
    pair: tuple[str, str],
    delete_one: bool = False,
    prefix: str,
    keys: tuple[str, ...] = (),
    attempts: int = 6,
) -> bool:
    """Two nodes, cut off from everything, write one record at the same HLC instant.

    Needs both clocks lagging (:func:`lagging`); the cut links stay cut until the next round or
    the heal. ``step(node, key=..., delete=...)`` makes one recorded write (``filler=True``: one
    that only moves the clock); ``keys``: settings a delete may pick. Whether a tie was made."""
    x, y = (world.cluster[name] for name in pair)
    if not all(lagging(n, world.offsets.get(n.name, 0)) for n in (x, y)):
        return False
    direct = [f"{x.name}>{y.name}", f"{y.name}>{x.name}"]
    if not all(link in world.proxy.links for link in direct):
        return False
    # Each takes the other's clock (its wall time, if later) over their own link; then every link
    # is cut and the one whose counter is behind catches up with writes of its own.
    for link in direct:
        world.proxy.set(link, drop=False, delay_ms=0, reset_after=None)
        world.cut(link, False)
    for writer, reader in ((x, y), (y, x)):
        op = step(writer.name, filler=True)
        if not op.hlc:
            return False
        if not _arrives(reader, op.hlc):
            return False
    for link in [*world.http_links, *(li for ls in world.media_links.values() for li in ls)]:
        world.cut(link)
        # and nothing in flight: a veth cut only stalls an open connection (a push of a filler
        # or of a tied write would be retransmitted once the link is up); the proxy's cut resets
        # them (restoring the link clears it)
        world.proxy.set(link, cut=True)
    note(f"forced tie between {pair}: every link cut")
    for attempt in range(attempts):
        (wx, lx), (wy, ly) = clock_of(x), clock_of(y)
        if wx != wy:
            note(f"forced tie: walls differ ({wx} and {wy})")
            return False
        behind, gap = (x, ly - lx) if lx < ly else (y, lx - ly)
        for _ in range(gap):
            step(behind.name, filler=True)
        key = f"{prefix}TIE_{attempt}_{time.monotonic_ns() % 10**6}"
        if delete_one:
            existing = [k for k in keys if y.config_exists(k)]
            key = existing[0] if existing else key
        ops = [
            step(x.name, key=key, delete=False),
            step(y.name, key=key, delete=delete_one and y.config_exists(key)),
        ]
        stamps = {op.hlc.rsplit(":", 1)[0] for op in ops if op.hlc}
        if len(stamps) == 1 and all(op.accepted for op in ops):
            note(f"forced tie made at {stamps.pop()}")
            return True
    return False


class Schedule:
    """Faults drawn from ``seed``; :meth:`run` interleaves them with the workload's steps."""

    def __init__(
        self, world: World, *, seed: int, budget: Budget, prefix: str, keys: tuple[str, ...]
    ) -> None:
        """``prefix``: of the settings a forced tie writes; ``keys``: ones it may delete."""
        self.world = world
        self.prefix = prefix
        self.keys = keys
        self.rng = random.Random(seed * 7919 + 1)
        self.budget = budget

    def run(self, step: Callable[..., Any], note: Callable[[str], None]) -> None:
        """``budget.rounds`` rounds: faults on, ``ops_per_round`` steps with a kill in the middle,
        replays, some faults off again."""
        world, rng = self.world, self.rng
        names = sorted(world.nodes)
        for number in range(self.budget.rounds):
            note(f"round {number}")
            for link in world.http_links:
                fault = rng.choice(["clean", "clean", "cut", "delay", "drop", "reset"])
                faults: dict[str, object] = {"cut": False, "drop": False, "delay_ms": 0}
                faults["reset_after"] = None
                if fault == "cut":
                    faults["cut"] = True
                elif fault == "delay":
                    faults["delay_ms"] = rng.choice([50, 200, 800])
                elif fault == "drop":
                    faults["drop"] = True
                elif fault == "reset":
                    faults["reset_after"] = rng.choice([0, 20, 200])
                cut = bool(faults.pop("cut"))
                world.proxy.set(link, **faults)  # type: ignore[arg-type]
                src, dst = link.split(">")
                if cut:
                    note(world.set_link(src, dst, up=False))
                else:
                    world.set_link(src, dst, up=True)
                    if fault != "clean":
                        note(f"link {world.proxy.links[link].describe()}")
            beyond = number == 0 and self.budget.skew_beyond
            for medium, links in sorted(world.media_links.items()):
                down = rng.random() < 0.35 and not beyond  # the held writes take the media
                for link in links:
                    world.proxy.set(link, cut=down)
                if down:
                    note(f"storage outage: {medium}")
            if beyond:
                self.skew_beyond(step, note)
            elif rng.random() < 0.5:
                name = rng.choice(names)
                offset = rng.randint(-self.budget.max_skew_ms, self.budget.max_skew_ms)
                # After a skew beyond tolerance, timestamps run that far ahead for a while: a
                # clock set back further than the tolerance allows would hold them for as long.
                floor = world.ahead_ms() - SKEW_TOLERANCE_MS + 60_000
                if offset < floor:
                    note(f"clock skew: {offset} ms raised to {floor} ms (timestamps run ahead)")
                    offset = floor
                note(f"clock skew: node {name} restarted with offset {offset} ms")
                world.restart(name, offset_ms=offset)
            lose = None
            if self.budget.lose_acks and world.clients and rng.random() < 0.5:
                lose = rng.choice(sorted(world.clients))
                world.proxy.set(world.clients[lose], lose_ack=True)
                note(f"client link of node {lose}: 2xx answers to writes lost")
            kill_at = rng.randrange(self.budget.ops_per_round)
            for index in range(self.budget.ops_per_round):
                if index == kill_at:
                    self._kill(step, note)
                else:
                    step(None)
            if lose is not None:
                world.proxy.set(world.clients[lose], lose_ack=False)
            self._replay(note)
            world.ensure_running()
            if rng.random() < 0.5:
                x, y = rng.sample([n for n in names if n != "c"], k=2)
                force_tie(
                    world,
                    step,
                    note,
                    pair=(x, y),
                    delete_one=rng.random() < 0.3,
                    prefix=self.prefix,
                    keys=self.keys,
                )

    def skew_beyond(self, step: Callable[..., Any], note: Callable[[str], None]) -> list[Any]:
        """One node's clock put beyond a peer's tolerated skew, and two writes on it.

        The peer is the other node with the slowest clock; the node is one that shares a
        medium with it (the bucket or the external database) where there is one: signed HTTP
        between the two is refused (their clocks are beyond the signature window), so its writes
        reach that peer over the medium, stamped ``SKEW_TOLERANCE_MS + SKEW_BEYOND_MARGIN_MS``
        ahead of the peer's clock, and the peer holds them in quarantine for clock skew until
        they are within the bound (about the margin later). Its clock stays skewed until
        :meth:`World.heal`; :func:`skew_holds` finds the held writes at the end. The operations
        made."""
        world, rng = self.world, self.rng
        names = sorted(world.nodes)
        slowest = min(world.offsets.get(name, 0) for name in names)
        peer = rng.choice([n for n in names if world.offsets.get(n, 0) == slowest])
        sharing = sorted(
            {
                link.split("@")[1]
                for links in world.media_links.values()
                if f"{links[0].split('@')[0]}@{peer}" in links
                for link in links
            }
            - {peer}
        ) or [n for n in names if n != peer]
        name = rng.choice(sharing)
        offset = slowest + SKEW_TOLERANCE_MS + SKEW_BEYOND_MARGIN_MS
        world.ahead = (offset, time.monotonic())
        note(
            f"clock skew beyond tolerance: node {name} restarted with offset {offset} ms, "
            f"{offset - slowest} ms ahead of node {peer} ({SKEW_TOLERANCE_MS} ms tolerated)"
        )
        world.restart(name, offset_ms=offset)
        return [step(name, delete=False), step(name, delete=False)]

    def _kill(self, step: Callable[..., Any], note: Callable[[str], None]) -> None:
        """kill -9 of web (with a write to it in flight) or of worker + beat, then restart."""
        world, rng = self.world, self.rng
        name = rng.choice(sorted(world.nodes))
        node = world.cluster[name]
        process = rng.choice(["web", "celery"])
        note(f"kill -9 {process} of node {name}")
        if process == "web":
            writer = threading.Thread(target=step, args=(name,), daemon=True)
            writer.start()
            threading.Event().wait(rng.uniform(0.0, 0.15))
            node.kill(signal.SIGKILL, "web")
            writer.join(timeout=60)
            node.start_web()
            node.wait_ready()
        else:
            node.kill(signal.SIGKILL, "celery")
            step(name)
            node.start_celery()

    def _replay(self, note: Callable[[str], None]) -> None:
        """Captured push batches sent again to their targets: duplicated, in reverse order."""
        world, rng = self.world, self.rng
        for link_name in world.http_links:
            captured = world.proxy.captured(link_name)
            if not captured or rng.random() < 0.5:
                continue
            picked = rng.sample(captured, k=min(3, len(captured)))
            batch = [*picked, *reversed(picked)]
            port = world.proxy.links[link_name].target[1]
            statuses = [replay(raw, port) for raw in batch]
            note(f"replayed {len(batch)} push batches on {link_name} as sent: {statuses}")
            # Signed again (fresh nonce, the target's time): duplicated and out of order, they
            # reach the apply code, which must take each at most once in effect.
            target = link_name.split(">")[1]
            now_s = (int(time.time() * 1000) + world.offsets.get(target, 0)) // 1000
            fresh = [resign(raw, secret=TEST_SYNC_SECRET, now_s=now_s) for raw in batch]
            resent = [replay(raw, port) for raw in fresh]
            note(f"replayed {len(fresh)} push batches on {link_name} signed again: {resent}")
            statuses += resent
            bad = [s for s in statuses if s is not None and s >= 500]
            if bad:
                raise AssertionError(f"a replayed push batch got {bad} on {link_name}")
