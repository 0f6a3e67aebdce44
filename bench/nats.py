"""Fifty nodes on one NATS JetStream stream (``python -m bench nats``).

Prints, measured in one run on this machine (no assertions), with the machine's load average:

1. **write -> visible**: ``ROUNDS`` single writes, each on a random node (the write and its
   push cycle), then every other node follows until it holds the value; p50, p99 and the
   maximum over every (write, other node) pair, from the moment the write was asked for to the
   commit of the cycle that applied it on the other node;
2. **cost**: the messages each node sent the server (the server's own counters, ``/connz``)
   during an idle period of ``IDLE_SECONDS`` (goal: 0) and for one change (the same for every
   reader, whatever the size of the fleet: O(1));
3. **convergence**: ``CHANGES`` random writes and deletes spread over every node, each pushed
   at once, then every node follows until all have read the whole stream: the time that took
   and whether all ``NODES`` digests are identical.

Then records the goal rows (``bench._report.goal``): p99 under one second; identical digests;
zero messages per node while idle.

The nodes are ``tests.support.inprocess.InProcessNatsGroup``'s, each with a database of its own
(SQLite files in a temporary folder; PostgreSQL databases on ``TEST_DATABASE_URL``'s server when
it is set), its own connection, durable consumer and doorbell, on one stream of a private
nats-server (``tests.support.nats_server``). Fifty Django processes would not fit this 2-core
machine; the nodes are shared out over ``HOSTS`` host processes (each an in-process group that
runs its nodes one after the other), driven by this process over pipes (one JSON line per
command and answer). Latencies compare ``time.monotonic()`` across processes (one system-wide
clock on Linux). ``BENCH_NATS_NODES``, ``BENCH_NATS_HOSTS``, ``BENCH_NATS_ROUNDS`` and
``BENCH_NATS_CHANGES`` override the sizes; ``BENCH_NATS_HOSTS=1`` is one process for all (the
comparison of docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

NODES = int(os.environ.get("BENCH_NATS_NODES", "50"))
HOSTS = max(1, int(os.environ.get("BENCH_NATS_HOSTS", "4")))
ROUNDS = int(os.environ.get("BENCH_NATS_ROUNDS", "20"))
CHANGES = int(os.environ.get("BENCH_NATS_CHANGES", "200"))
IDLE_SECONDS = 3.0
GOAL_P99_MS = 1000.0
SEED = 2016
WAIT = 600.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- a host: some of the nodes, in one process ------------------------------------------------


def host(index: int, url: str, group_id: str) -> None:
    """Serve commands (one JSON line each on standard input) for an in-process group of nodes,
    following the stream between them; answer each with one JSON line."""
    import django

    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else prints goes to standard error
    django.setup()
    from django.db import DEFAULT_DB_ALIAS, connections

    from tests.support.inprocess import InProcessNatsGroup, NodeDatabases

    base = dict(connections.settings[DEFAULT_DB_ALIAS])
    directory = Path(tempfile.mkdtemp(prefix=f"cs-bench-nats-{index}-"))
    databases = NodeDatabases(base=base, directory=directory, prefix=f"cs_bench_nats_{index}")
    group = InProcessNatsGroup(databases=databases, url=url, group=group_id)
    commands: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            commands.put(json.loads(line))
            group.wake()
        commands.put({"op": "quit"})
        group.wake()

    threading.Thread(target=read, daemon=True).start()
    pending: list[tuple[dict[str, Any], Callable[[], Any]]] = []

    def awaited(command: dict[str, Any]) -> Callable[[], Any]:
        key, writer = command["key"], command.get("writer")
        others = [m for m in group.members.values() if m.name != writer]

        def check() -> Any:
            if all(key in m.applied_at for m in others):
                return [m.applied_at[key] for m in others]
            return None

        return check

    def settled() -> Any:
        return group.seconds["cycles"] if group.converged() else None

    try:
        while True:
            group.follow_once(wait=1.0)
            for command, check in list(pending):
                if command["op"] == "settle" and group.ringing():
                    continue
                found = check()
                if found is not None:
                    pending.remove((command, check))
                    out.write(json.dumps({"answer": found}) + "\n")
            while not commands.empty():
                command = commands.get()
                op = command["op"]
                answer: Any = True
                if op == "quit":
                    return
                if op == "join":
                    for name in command["names"]:
                        group.join(name)
                elif op == "write":
                    answer = time.monotonic()
                    group.write(command["name"], command["key"], command["value"])
                elif op == "delete":
                    group.delete(command["name"], command["key"])
                elif op == "watch":
                    group.watched = {command["key"]: command["value"]}
                    for member in group.members.values():
                        member.applied_at.clear()
                elif op == "await":
                    pending.append((command, awaited(command)))
                    continue
                elif op == "settle":
                    group.wake()
                    pending.append((command, settled))
                    continue
                elif op == "digests":
                    answer = group.digests()
                out.write(json.dumps({"answer": answer}) + "\n")
    finally:
        group.close()
        databases.drop_all()
        shutil.rmtree(directory, ignore_errors=True)


class Host:
    """The driver's end of one host process."""

    def __init__(self, index: int, url: str, group_id: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.nats", "host", str(index), url, group_id],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.names: list[str] = []

    def send(self, op: str, **fields: Any) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, **fields}) + "\n")

    def answer(self) -> Any:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError("a bench host died (its standard error says why)")
        return json.loads(line)["answer"]

    def ask(self, op: str, **fields: Any) -> Any:
        self.send(op, **fields)
        return self.answer()

    def close(self) -> None:
        try:
            self.send("quit")
            self.process.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(10)


def _all(hosts: list[Host], op: str, **fields: Any) -> list[Any]:
    for h in hosts:
        h.send(op, **fields)
    return [h.answer() for h in hosts]


def _sent(server: Any, names: list[str]) -> dict[str, int]:
    sent = server.sent_by()
    return {n: sent.get(f"configsync {n}", 0) + sent.get(f"configsync-bell {n}", 0) for n in names}


def _settle(hosts: list[Host], group: Any) -> None:
    """Until every host's nodes have read the whole stream and nothing new was published."""
    while True:
        last = group.stream_last_seq()
        _all(hosts, "settle")
        if group.stream_last_seq() == last:
            return


def run() -> None:
    import django

    django.setup()
    from django.db import DEFAULT_DB_ALIAS, connections

    from bench._report import goal
    from tests.support.inprocess import InProcessNatsGroup, NodeDatabases
    from tests.support.nats_server import NatsServer

    backend = connections.settings[DEFAULT_DB_ALIAS]["ENGINE"].rsplit(".", 1)[-1]
    load = os.getloadavg()
    print(
        f"{NODES} in-process nodes in {HOSTS} host process(es), one stream; database: "
        f"{backend}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; Python "
        f"{sys.version.split()[0]}",
        flush=True,
    )
    rng = random.Random(SEED)
    names = [f"n{i:02d}" for i in range(NODES)]
    group_id = f"b{uuid.uuid4().hex[:10]}"
    with NatsServer(name="bench", monitor=True) as server:
        # The driver's own view of the stream (no node of its own).
        probe = InProcessNatsGroup(
            databases=NodeDatabases(base={}, directory=Path("."), prefix="unused"),
            url=server.url,
            group=group_id,
        )
        hosts = [Host(i, server.url, group_id, dict(os.environ)) for i in range(HOSTS)]
        where: dict[str, Host] = {}
        for i, name in enumerate(names):
            hosts[i % HOSTS].names.append(name)
            where[name] = hosts[i % HOSTS]
        try:
            began = time.monotonic()
            for h in hosts:
                h.send("join", names=h.names)
            for h in hosts:
                h.answer()
            print(f"  {NODES} nodes joined in {time.monotonic() - began:.1f} s", flush=True)

            samples: list[float] = []
            for round_ in range(ROUNDS):
                writer, key, value = rng.choice(names), f"LATENCY_{round_}", f"v{round_}"
                _all(hosts, "watch", key=key, value=value)
                for h in hosts:
                    h.send("await", key=key, writer=writer)
                wrote = where[writer].ask("write", name=writer, key=key, value=value)
                for h in hosts:
                    samples += [(t - wrote) * 1000 for t in h.answer()]
                _settle(hosts, probe)
            p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
            print(
                f"write -> visible on the {NODES - 1} others ({ROUNDS} writes, {len(samples)} "
                f"samples): p50 {p50:,.0f} ms, p99 {p99:,.0f} ms, max {max(samples):,.0f} ms, "
                f"mean {statistics.fmean(samples):,.0f} ms",
                flush=True,
            )

            idle_before = _sent(server, names)
            time.sleep(IDLE_SECONDS)  # the hosts follow meanwhile: their bells stay silent
            idle = _sent(server, names)
            idle_cost = max(idle[n] - idle_before[n] for n in names)
            print(f"idle {IDLE_SECONDS:.0f} s: at most {idle_cost} messages per node", flush=True)

            start = _sent(server, names)
            _all(hosts, "watch", key="ONE_CHANGE", value="x")
            where[names[0]].ask("write", name=names[0], key="ONE_CHANGE", value="x")
            _settle(hosts, probe)
            end = _sent(server, names)
            readers = sorted({end[n] - start[n] for n in names[1:]})
            print(
                f"one change: the writer sent {end[names[0]] - start[names[0]]} messages, each "
                f"reader {'/'.join(map(str, readers))}",
                flush=True,
            )

            _all(hosts, "watch", key="", value="")
            live: dict[str, set[str]] = {n: set() for n in names}
            began = time.monotonic()
            for step in range(CHANGES):
                name = rng.choice(names)
                key = f"CONVERGE_{rng.randrange(40)}"
                if key in live[name] and rng.random() < 0.2:
                    where[name].ask("delete", name=name, key=key)
                    live[name].discard(key)
                else:
                    where[name].ask("write", name=name, key=key, value=f"c{step}-{name}")
                    live[name].add(key)
            _settle(hosts, probe)
            seconds = time.monotonic() - began
            digests: dict[str, str] = {}
            for answer in _all(hosts, "digests"):
                digests.update(answer)
            same = len(set(digests.values())) == 1 and len(digests) == NODES
            print(
                f"convergence: {CHANGES} random writes and deletes on {NODES} nodes, then "
                f"following: {seconds:.1f} s; digests identical: {same}",
                flush=True,
            )
            load = os.getloadavg()
            print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)
        finally:
            for h in hosts:
                h.close()

    goal(
        area="nats",
        what=f"write visible on {NODES - 1} other nodes, p99 ({backend}, {HOSTS} host(s))",
        measured=f"{p99:,.0f} ms (p50 {p50:,.0f} ms)",
        target=f"< {GOAL_P99_MS:,.0f} ms",
        met=p99 < GOAL_P99_MS,
    )
    goal(
        area="nats",
        what=f"{NODES} nodes converge after {CHANGES} random writes/deletes ({backend})",
        measured=f"identical digests: {same} ({seconds:.1f} s)",
        target="identical digests",
        met=same,
    )
    goal(
        area="nats",
        what="messages per node in an idle period",
        measured=str(idle_cost),
        target="0",
        met=idle_cost == 0,
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cs-bench-nats-") as directory:
        url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{directory}/bench.sqlite3"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench._settings", "BENCH_DATABASE_URL": url}
        subprocess.run([sys.executable, "-m", "bench.nats"], env=env, check=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "host":
        host(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif os.environ.get("DJANGO_SETTINGS_MODULE") == "bench._settings":
        run()
    else:
        main()
