"""Real configsync nodes as separate processes, for multi-node tests and bench/.

A :class:`Cluster` starts each node from this repository exactly as the README does: its own
database, its own Redis DB (or Celery's filesystem broker under its own var/), ``manage.py
migrate``, then a web server (``manage.py runserver``) and a Celery worker with embedded beat
(and, with ``Cluster(pusher=True)``, a pusher for the ``push`` queue, as the Procfile runs).
Nodes talk to each other over real HTTP on 127.0.0.1. Nothing is mocked. The ``manage.py``
commands the harness runs on a node (:meth:`Node.manage`: ``migrate``, ``configsync ...``,
``shell``) are forked from the node's fork server (:mod:`multinode.forkserver`), which imported
Django and the project once, unless ``MULTINODE_FORKSERVER=0``; web and worker are always
processes of their own.

Backends follow the test run:

- ``TEST_DATABASE_URL`` set (PostgreSQL): one database per node, ``<prefix>_node_<name>``,
  dropped and created by the harness, where the prefix is ``MULTINODE_DB_PREFIX`` or else that
  URL's database name; otherwise a SQLite file in the node's directory.
- ``REDIS_URL`` set: one Redis DB per node, the URL's DB number replaced by one from
  ``MULTINODE_REDIS_DBS`` (comma-separated, default ``10,11,12,13,14,15``), flushed at start;
  otherwise the filesystem broker and file locks in the node's own ``CONFIGSYNC_VAR_DIR``.
- ``MULTINODE_BROKER_URL`` set (RabbitMQ, ``amqp://USER:PASSWORD@HOST:PORT/``): the Celery broker
  of every node (``CELERY_BROKER_URL``), each node in a virtual host of its own, made with
  ``rabbitmqctl`` before the nodes start and deleted with the cluster, so that no node ever
  consumes another's tasks; Redis (when set) keeps the cache, locks and notifications.

Every process is bound to 127.0.0.1 (or, for a node given a network namespace, to its address
there: ``Cluster(..., netns={name: (namespace, address)})`` spawns the node's web, worker and
fork server under ``ip netns exec`` and its peers reach it at that address), logs to a file in
the node's directory, and is stopped by :meth:`Cluster.stop` (terminate, wait, kill) or killed
by :meth:`Cluster.destroy`, which fixtures call on teardown, failures included.
"""

from __future__ import annotations

import contextlib
import io
import json
import locale
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CELERY = str(Path(sys.executable).with_name("celery"))

# Throwaway test keys (the same as settings/test.py): never real secrets.
TEST_ENCRYPTION_KEYS = (
    "Y29uZmlnc3luYy10ZXN0LWtleS0wMS0tLS0tLS0tLS0,Y29uZmlnc3luYy10ZXN0LWtleS0wMi0tLS0tLS0tLS0"
)
TEST_SYNC_SECRET = "multinode-test-sync-secret-not-a-real-one"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "multinode-admin-password"  # test-only account
ADMIN_SALT = "multinodeharnessadmin1"
DEFAULT_REDIS_DBS = "10,11,12,13,14,15"
READY_TIMEOUT = 90.0
FORKSERVER = os.environ.get("MULTINODE_FORKSERVER", "1").strip() != "0"
"""Whether :meth:`Node.manage` forks commands from the node's fork server (``multinode.forkserver``,
default) rather than starting ``python manage.py`` afresh each time (``MULTINODE_FORKSERVER=0``)."""

T = TypeVar("T")

_QUIET_WORKER = ("--without-gossip", "--without-mingle", "--without-heartbeat")
"""Worker options of every Celery process the harness starts (no chatter between workers)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at the time of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns a truthy value (returned); ``TimeoutError`` after
    ``timeout`` seconds. Exceptions raised by the predicate count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"gave up waiting for {what or predicate!r}{detail}")
        time.sleep(interval)


def redis_db_list() -> list[str]:
    """The Redis DB numbers of ``MULTINODE_REDIS_DBS`` (default ``10,…,15``), in order."""
    listed = os.environ.get("MULTINODE_REDIS_DBS", DEFAULT_REDIS_DBS)
    return [d.strip() for d in listed.split(",") if d.strip()]


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def _rabbitmqctl(*args: str) -> None:
    """``rabbitmqctl ARGS`` (the harness runs where RabbitMQ runs, as a user allowed to)."""
    result = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: {result.stderr.strip()[-500:]}")


def node_broker_url(url: str, *, vhost: str) -> str:
    """``url`` (a RabbitMQ URL) with its virtual host replaced by ``vhost``."""
    parts = urlsplit(url)
    if parts.scheme not in AMQP_SCHEMES or not parts.hostname:
        raise RuntimeError("MULTINODE_BROKER_URL must be amqp://USER:PASSWORD@HOST:PORT/")
    return urlunsplit((parts.scheme, parts.netloc, f"/{vhost}", parts.query, parts.fragment))


def _replace_db(url: str, *, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def pg_admin(url: str) -> Any:
    """An autocommit connection to the ``postgres`` database of the server ``url`` names."""
    import psycopg

    return psycopg.connect(_replace_db(url, db="postgres"), autocommit=True)


def pg_recreate(url: str) -> None:
    """Drop (forcing connections out) and create the database ``url`` names."""
    name = urlsplit(url).path.lstrip("/")
    with pg_admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def pg_drop(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with contextlib.suppress(Exception), pg_admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Node:
    """One node: its environment, its processes and helpers to poke it from the outside."""

    name: str
    directory: Path
    port: int
    env: dict[str, str]
    database_url: str
    redis_url: str = ""
    broker_vhost: str = ""
    """This node's RabbitMQ virtual host (``MULTINODE_BROKER_URL``); empty otherwise."""
    namespace: str = ""
    """The network namespace its processes run in (``ip netns exec``); empty: the root one."""
    host: str = "127.0.0.1"
    """The address its web server listens on (in :attr:`namespace`, when set)."""
    pusher: bool = False
    """Whether its push-only cycles run in a pusher of their own (the Procfile's ``pusher``:
    ``celery worker -Q push --pool=solo``, process ``pusher``) and its worker consumes the
    default queue only; else its one worker consumes both queues."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _session: requests.Session | None = None
    _forkserver: subprocess.Popen[bytes] | None = None
    _forkserver_env: dict[str, str] | None = None
    """The environment the fork server was started with (a changed ``env`` restarts it)."""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def node_id(self) -> str:
        return self.env["CONFIGSYNC_NODE_ID"]

    def log_path(self, process: str) -> Path:
        return self.directory / f"{process}.log"

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` as run in this node's network namespace (unchanged without one)."""
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else argv

    # --- processes ---------------------------------------------------------------------------

    def _spawn(self, process: str, argv: list[str]) -> None:
        log = self.log_path(process).open("ab")
        log.write(f"\n=== start {' '.join(argv)} ===\n".encode())
        log.flush()
        self.processes[process] = subprocess.Popen(
            self.argv(argv),
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def start_web(self) -> None:
        self._spawn(
            "web",
            [PYTHON, "manage.py", "runserver", f"{self.host}:{self.port}", "--noreload"],
        )

    def start_celery(self) -> None:
        """A worker with embedded beat (threads pool: cheap on a 2-core machine), consuming both
        queues; with :attr:`pusher`, the default queue only, and a pusher beside it."""
        queues = ["-Q", "celery"] if self.pusher else []
        self._spawn(
            "celery",
            [
                CELERY,
                "-A",
                "settings",
                "worker",
                "--beat",
                "--pool=threads",
                "--concurrency=3",
                "--loglevel=INFO",
                *queues,
                *_QUIET_WORKER,
                f"--hostname={self.name}@%h",
                "--schedule",
                str(self.directory / "var" / "celerybeat-schedule"),
            ],
        )
        if self.pusher:
            self.start_pusher()

    def start_pusher(self) -> None:
        """The Procfile's ``pusher``: a worker of the ``push`` queue alone, solo pool (the push
        runs in the process that took its message)."""
        self._spawn(
            "pusher",
            [
                CELERY,
                "-A",
                "settings",
                "worker",
                "-Q",
                "push",
                "--pool=solo",
                "--loglevel=INFO",
                *_QUIET_WORKER,
                f"--hostname={self.name}-push@%h",
            ],
        )

    def start_nats_follower(self) -> None:
        """The Procfile's ``nats``: the follower of the group's JetStream stream (idle unless
        the node's environment sets ``CONFIGSYNC_NATS_URL``)."""
        self._spawn("nats", [PYTHON, "manage.py", "configsync", "nats", "follow"])

    def start(self, *, celery: bool = True, wait: bool = True) -> None:
        """Start web (and worker + beat); wait for ``/api/v1/health`` to answer 200."""
        self.start_web()
        if celery:
            self.start_celery()
        if wait:
            self.wait_ready()

    def alive(self, process: str) -> bool:
        proc = self.processes.get(process)
        return proc is not None and proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            for process, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"node {self.name}: {process} exited with {proc.returncode}\n"
                        + self.logs_tail()
                    )
            if self.namespace:
                return self._healthy_in_namespace()
            response = requests.get(f"{self.base_url}/api/v1/health", timeout=5)
            return response.status_code == 200

        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except RuntimeError:
                raise
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.name} not ready\n{self.logs_tail()}")
            time.sleep(0.2)

    def _healthy_in_namespace(self) -> bool:
        """Whether ``/api/v1/health`` answers 200 when asked from inside :attr:`namespace` (the
        harness's own process, in the root namespace, cannot reach the node's address)."""
        probe = (
            "import http.client, sys\n"
            f"c = http.client.HTTPConnection({self.host!r}, {self.port}, timeout=5)\n"
            "c.request('GET', '/api/v1/health')\n"
            "sys.exit(c.getresponse().status != 200)\n"
        )
        result = subprocess.run(
            self.argv([PYTHON, "-S", "-c", probe]), capture_output=True, timeout=15, check=False
        )
        return result.returncode == 0

    def send_signal(self, sig: int, *processes: str) -> None:
        """Send ``sig`` to the process groups of ``processes`` (all when none is named)."""
        for process in processes or tuple(self.processes):
            proc = self.processes.get(process)
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)

    def kill(self, sig: int = signal.SIGKILL, *processes: str) -> None:
        """Kill the named processes (all by default) with ``sig`` and reap them."""
        names = processes or tuple(self.processes)
        self.send_signal(sig, *names)
        for process in names:
            proc = self.processes.pop(process, None)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)

    def stop(self, *processes: str, timeout: float = 15.0, terminate: bool = True) -> None:
        """Terminate (SIGTERM unless already sent), wait up to ``timeout``, then SIGKILL."""
        names = processes or tuple(self.processes)
        if terminate:
            self.send_signal(signal.SIGTERM, *names)
        deadline = time.monotonic() + timeout
        for process in names:
            proc = self.processes.get(process)
            if proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Whether or not the leader exited in time, nothing of its group may outlive the
            # test: e.g. the embedded beat child of `celery worker --beat` survives its parent.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            self.processes.pop(process, None)

    # --- talking to the node -----------------------------------------------------------------

    def manage(
        self, *args: str, check: bool = False, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python manage.py ARGS`` in this node's environment: forked from the node's fork
        server (see :data:`FORKSERVER`), else a new process. Standard input is ``stdin``
        (empty when ``None``); output is captured as text, as ``subprocess.run`` does."""
        result = self._forked(args, timeout=timeout, stdin=stdin) if FORKSERVER else None
        if result is None:
            result = subprocess.run(
                self.argv([PYTHON, "manage.py", *args]),
                cwd=REPO,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=stdin or "",
            )
        if check and result.returncode != 0:
            raise AssertionError(
                f"node {self.name}: manage.py {' '.join(args[:2])} exited {result.returncode}:"
                f"\n{result.stdout}\n{result.stderr}"
            )
        return result

    def _forkserver_socket(self) -> Path | None:
        """The socket of this node's fork server, started (or restarted, when ``env`` changed
        since) on demand; ``None`` when it could not start in this environment (its log,
        ``forkserver.log``, says why), and then the harness runs ``manage.py`` afresh."""
        socket_path = self.directory / "manage.sock"
        server = self._forkserver
        if server is not None and self._forkserver_env == self.env:
            return socket_path if server.poll() is None else None
        self.stop_forkserver()
        socket_path.unlink(missing_ok=True)
        with self.log_path("forkserver").open("ab") as log:
            server = subprocess.Popen(
                self.argv([PYTHON, "-m", "multinode.forkserver", str(socket_path)]),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._forkserver, self._forkserver_env = server, dict(self.env)
        deadline = time.monotonic() + READY_TIMEOUT
        while not socket_path.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
                return None
            time.sleep(0.02)
        return socket_path

    def stop_forkserver(self) -> None:
        """Kill this node's fork server, if any (it holds no connection and no state)."""
        server, self._forkserver, self._forkserver_env = self._forkserver, None, None
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)

    def _forked(
        self, args: tuple[str, ...], *, timeout: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str] | None:
        """``manage.py ARGS`` forked from the fork server; ``None`` when there is none."""
        socket_path = self._forkserver_socket()
        if socket_path is None:
            return None
        encoding = locale.getpreferredencoding(False)
        argv = [PYTHON, "manage.py", *args]
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(3)]
            files[0].write((stdin or "").encode(encoding))
            files[0].seek(0)
            conn = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            conn.settimeout(timeout)
            try:
                conn.connect(str(socket_path))
            except OSError:  # it died since: the next call starts another
                self.stop_forkserver()
                return None
            request = json.dumps(list(args)).encode()
            socket.send_fds(conn, [request], [f.fileno() for f in files])
            pid = 0
            try:
                pid = _receive_int(conn)
                code = _receive_int(conn)
            except TimeoutError:
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(argv, timeout) from None
            out, err = (_read_text(f, encoding) for f in files[1:])
        return subprocess.CompletedProcess(argv, code, out, err)

    def cli(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``python manage.py configsync ARGS`` in this node's environment."""
        return self.manage("configsync", *args, **kwargs)

    def shell(self, code: str, *, timeout: float = 300) -> str:
        """Run Python ``code`` in ``manage.py shell`` on this node; its standard output."""
        return self.manage("shell", "-c", code, check=True, timeout=timeout).stdout

    def session(self) -> requests.Session:
        """A ``requests`` session logged in as the node's admin (created on first use)."""
        if self._session is None:
            session = requests.Session()
            login = f"{self.base_url}/admin/login/"
            session.get(login, timeout=10)
            response = session.post(
                login,
                data={
                    "username": ADMIN_USER,
                    "password": ADMIN_PASSWORD,
                    "csrfmiddlewaretoken": session.cookies.get("csrftoken", ""),
                    "next": "/admin/",
                },
                headers={"Referer": login},
                timeout=10,
            )
            response.raise_for_status()
            assert "sessionid" in session.cookies, f"admin login failed on node {self.name}"
            session.headers["X-CSRFToken"] = session.cookies.get("csrftoken") or ""
            session.headers["Referer"] = self.base_url + "/"
            self._session = session
        return self._session

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return self.session().get(self.base_url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return self.session().post(self.base_url + path, **kwargs)

    def sync_status(self) -> dict[str, Any]:
        response = self.get("/api/v1/sync/status")
        response.raise_for_status()
        return dict(response.json())

    # --- reading the node's database directly (fast polling, raw columns) ---------------------

    def sql(self, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on the node's database; ``%s`` placeholders on both backends."""
        if self.database_url.startswith("sqlite"):
            path = urlsplit(self.database_url).path
            path = path[1:] if path.startswith("//") else path
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                return list(conn.execute(query.replace("%s", "?"), tuple(params)).fetchall())
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return list(conn.execute(query, tuple(params)).fetchall())  # type: ignore[arg-type]

    def config_value(self, key: str) -> str | None:
        """The raw ``value`` column of setting ``key`` (``None`` when absent)."""
        rows = self.sql("SELECT value FROM configsync_systemconfig WHERE key = %s", [key])
        return rows[0][0] if rows else None

    def config_exists(self, key: str) -> bool:
        return bool(self.sql("SELECT 1 FROM configsync_systemconfig WHERE key = %s", [key]))

    def logs_tail(self, lines: int = 60) -> str:
        out = []
        for path in sorted(self.directory.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- node {self.name} {path.name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.directory.glob("*.log"))
        )


def _read_text(file: Any, encoding: str) -> str:
    """What was written to ``file``, decoded as ``subprocess.run(text=True)`` does."""
    file.seek(0)
    return io.TextIOWrapper(file, encoding=encoding).read()


def _receive_int(conn: socket.socket) -> int:
    """One answer of the fork server (a signed 64-bit integer)."""
    data = b""
    while len(data) < 8:
        chunk = conn.recv(8 - len(data))
        if not chunk:
            raise ConnectionError("the fork server closed the connection")
        data += chunk
    return int.from_bytes(data, "big", signed=True)


class Cluster:
    """Several nodes wired as peers. ``links`` lists pairs that peer with each other."""

    def __init__(
        self,
        root: Path,
        names: Iterable[str],
        *,
        links: Iterable[tuple[str, str]] | None = None,
        interval: int = 2,
        extra_env: dict[str, str] | None = None,
        node_env: dict[str, dict[str, str]] | None = None,
        netns: dict[str, tuple[str, str]] | None = None,
        pusher: bool = False,
    ) -> None:
        """``extra_env`` goes to every node; ``node_env`` maps a node's name to its own extras;
        ``netns`` maps a node's name to ``(network namespace, address)``: its processes run in
        that namespace (which the caller made, with routes to the peers' addresses) and its web
        server listens on that address, where its peers reach it. ``pusher``: every node runs
        its push-only cycles in a pusher of its own, as the Procfile does (:attr:`Node.pusher`)."""
        self.root = root
        self.names = list(names)
        if links is None:
            links = [(a, b) for i, a in enumerate(self.names) for b in self.names[i + 1 :]]
        self.links = [tuple(link) for link in links]
        self.interval = interval
        self.extra_env = dict(extra_env or {})
        self.node_env = {name: dict(extra) for name, extra in (node_env or {}).items()}
        self.netns = dict(netns or {})
        self.pusher = pusher
        self.nodes: dict[str, Node] = {}
        self._build()

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def _build(self) -> None:
        test_db = os.environ.get("TEST_DATABASE_URL", "")
        redis_url = os.environ.get("REDIS_URL", "")
        redis_dbs = redis_db_list()
        if redis_url and len(redis_dbs) < len(self.names):
            raise RuntimeError(
                f"need {len(self.names)} Redis DBs, MULTINODE_REDIS_DBS has {len(redis_dbs)}"
                f" ({','.join(redis_dbs)})"
            )
        db_prefix = os.environ.get("MULTINODE_DB_PREFIX", "").strip()
        ports = {name: free_port() for name in self.names}
        hosts = {name: self.netns.get(name, ("", "127.0.0.1"))[1] for name in self.names}
        allowed = {name: dict.fromkeys(["127.0.0.1", "localhost", hosts[name]]) for name in hosts}
        broker_url = os.environ.get("MULTINODE_BROKER_URL", "").strip()
        self.broker_user = (urlsplit(broker_url).username or "guest") if broker_url else ""
        run_id = f"{os.getpid()}-{time.monotonic_ns() % 10**9}"
        base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONFIGSYNC_", "DJANGO_", "CELERY_"))
            and k not in {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL", "EXTERNAL_DATABASE_URL"}
        }
        for index, name in enumerate(self.names):
            directory = self.root / f"node-{name}"
            directory.mkdir(parents=True, exist_ok=True)  # for the logs; the settings create var/
            if test_db:
                prefix = db_prefix or urlsplit(test_db).path.lstrip("/")
                database_url = _replace_db(test_db, db=f"{prefix}_node_{name}")
            else:
                database_url = f"sqlite:///{directory / 'node.sqlite3'}"
            node_redis = _replace_db(redis_url, db=redis_dbs[index]) if redis_url else ""
            peers = [
                f"{other}=http://{hosts[other]}:{ports[other]}"
                for link in self.links
                if name in link
                for other in link
                if other != name
            ]
            env = {
                **base_env,
                "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "settings.local",
                "DJANGO_DEBUG": "false",
                "DJANGO_SECRET_KEY": f"multinode-test-secret-key-{name}",
                "DJANGO_ALLOWED_HOSTS": ",".join(allowed[name]),
                "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
                "DATABASE_URL": database_url,
                "CONFIGSYNC_VAR_DIR": str(directory / "var"),
                "CONFIGSYNC_NODE_ID": f"node-{name}",
                "CONFIGSYNC_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEYS,
                "CONFIGSYNC_SYNC_SECRET": TEST_SYNC_SECRET,
                "CONFIGSYNC_PEERS": ",".join(peers),
                "CONFIGSYNC_SYNC_INTERVAL_SECONDS": str(self.interval),
                "CONFIGSYNC_ENV_FILE": "",
                "CONFIGSYNC_DATA_CALLBACK_URL": "",
                "CONFIGSYNC_THROTTLE_ANON": "100000/min",
                "CONFIGSYNC_THROTTLE_USER": "100000/min",
                **self.extra_env,
                **self.node_env.get(name, {}),
            }
            if node_redis:
                env["REDIS_URL"] = node_redis
            vhost = f"multinode-{run_id}-{name}" if broker_url else ""
            if vhost:
                env["CELERY_BROKER_URL"] = node_broker_url(broker_url, vhost=vhost)
            self.nodes[name] = Node(
                name=name,
                directory=directory,
                port=ports[name],
                env=env,
                database_url=database_url,
                redis_url=node_redis,
                broker_vhost=vhost,
                namespace=self.netns.get(name, ("", ""))[0],
                host=hosts[name],
                pusher=self.pusher,
            )

    def _prepare_backends(self) -> None:
        import redis

        for node in self:
            if node.database_url.startswith("postgres"):
                pg_recreate(node.database_url)
            if node.redis_url:
                client = redis.Redis.from_url(node.redis_url)
                client.flushdb()
                client.close()
            if node.broker_vhost:
                _rabbitmqctl("add_vhost", node.broker_vhost)
                _rabbitmqctl(
                    "set_permissions", "-p", node.broker_vhost, self.broker_user, ".*", ".*", ".*"
                )

    def migrate(self) -> None:
        """Migrate every node (in parallel) and create its admin user.

        Users replicate: each node's harness admin is created as if applied from a peer (no
        version of it in the feed), so the nodes' admins stay their own and never meet as
        concurrent versions. They may meet all the same (a login on one node makes a version of
        its admin), so the admin has the same password hash on every node (one salt): a version
        from a peer leaves the hash, and so the node's admin sessions, as they were."""
        self._prepare_backends()
        script = (
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.hashers import make_password\n"
            "from django.core.management import call_command\n"
            "from configsync.replication.context import applying_remote\n"
            "call_command('migrate', verbosity=0, interactive=False)\n"
            "with applying_remote():\n"
            f"    get_user_model().objects.get_or_create(username={ADMIN_USER!r}, defaults=dict(\n"
            "        email='admin@example.invalid', is_staff=True, is_superuser=True,\n"
            f"        password=make_password({ADMIN_PASSWORD!r}, salt={ADMIN_SALT!r})))\n"
        )
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            results = pool.map(lambda node: node.manage("shell", "-c", script, timeout=300), self)
            for node, result in zip(self, results, strict=True):
                if result.returncode != 0:
                    raise RuntimeError(
                        f"migrate failed on node {node.name}:\n{result.stdout}{result.stderr}"
                    )

    def start(self) -> Cluster:
        self.migrate()
        for node in self:
            node.start(wait=False)
        for node in self:
            node.wait_ready()
        return self

    def stop(self) -> None:
        """Terminate every node at once, then wait for each (SIGKILL after a deadline)."""
        for node in self:
            node.send_signal(signal.SIGTERM)
        for node in self:
            node.stop(terminate=False)
            node.stop_forkserver()

    def destroy(self) -> None:
        """Kill every process (a cluster thrown away needs no clean stop: :meth:`stop` is for
        one that carries on) and drop the per-node PostgreSQL databases."""
        for node in self:
            node.kill()
            node.stop_forkserver()
        for node in self:
            if node.database_url.startswith("postgres"):
                pg_drop(node.database_url)
            if node.broker_vhost:
                with contextlib.suppress(Exception):
                    _rabbitmqctl("delete_vhost", node.broker_vhost)

    def logs_tail(self, lines: int = 60) -> str:
        return "\n".join(node.logs_tail(lines) for node in self)


_SAFE_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")


def unique_key(prefix: str) -> str:
    """A setting key unique to this run (tests sharing a cluster never collide)."""
    key = f"{prefix}_{os.getpid()}_{time.monotonic_ns() % 10**9}".upper()
    assert _SAFE_KEY.match(key), key
    return key
