"""Real configsync nodes as separate processes, for multi-node tests and bench/.

A :class:`Cluster` starts each node from this repository exactly as the README does: its own
database, its own Redis DB (or Celery's filesystem broker under its own var/), ``manage.py
migrate``, then a web server (``manage.py runserver``) and a Celery worker with embedded beat.
Nodes talk to each other over real HTTP on 127.0.0.1. Nothing is mocked.

Backends follow the test run:

- ``TEST_DATABASE_URL`` set (PostgreSQL): one database per node, ``<that name>_node_<name>``,
  dropped and created by the harness; otherwise a SQLite file in the node's directory.
- ``REDIS_URL`` set: one Redis DB per node, the URL's DB number replaced by one from
  ``MULTINODE_REDIS_DBS`` (comma-separated, default ``10,11,12,13,14,15``), flushed at start;
  otherwise the filesystem broker and file locks in the node's own ``CONFIGSYNC_VAR_DIR``.
- ``MULTINODE_BROKER_URL`` set (RabbitMQ, ``amqp://USER:PASSWORD@HOST:PORT/``): the Celery broker
  of every node (``CELERY_BROKER_URL``), each node in a virtual host of its own, made with
  ``rabbitmqctl`` before the nodes start and deleted with the cluster, so that no node ever
  consumes another's tasks; Redis (when set) keeps the cache, locks and notifications.

Every process is bound to 127.0.0.1, logs to a file in the node's directory, and is stopped by
:meth:`Cluster.stop` (terminate, wait, kill), which fixtures call on teardown, failures included.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
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
DEFAULT_REDIS_DBS = "10,11,12,13,14,15"
READY_TIMEOUT = 90.0

T = TypeVar("T")


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
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _session: requests.Session | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def node_id(self) -> str:
        return self.env["CONFIGSYNC_NODE_ID"]

    def log_path(self, process: str) -> Path:
        return self.directory / f"{process}.log"

    # --- processes ---------------------------------------------------------------------------

    def _spawn(self, process: str, argv: list[str]) -> None:
        log = self.log_path(process).open("ab")
        log.write(f"\n=== start {' '.join(argv)} ===\n".encode())
        log.flush()
        self.processes[process] = subprocess.Popen(
            argv,
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
            [PYTHON, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
        )

    def start_celery(self) -> None:
        """A worker with embedded beat (threads pool: cheap on a 2-core machine)."""
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
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--hostname={self.name}@%h",
                "--schedule",
                str(self.directory / "var" / "celerybeat-schedule"),
            ],
        )

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
        """``python manage.py ARGS`` in this node's environment."""
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"node {self.name}: manage.py {' '.join(args[:2])} exited {result.returncode}:"
                f"\n{result.stdout}\n{result.stderr}"
            )
        return result

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
    ) -> None:
        """``extra_env`` goes to every node; ``node_env`` maps a node's name to its own extras."""
        self.root = root
        self.names = list(names)
        if links is None:
            links = [(a, b) for i, a in enumerate(self.names) for b in self.names[i + 1 :]]
        self.links = [tuple(link) for link in links]
        self.interval = interval
        self.extra_env = dict(extra_env or {})
        self.node_env = {name: dict(extra) for name, extra in (node_env or {}).items()}
        self.nodes: dict[str, Node] = {}
        self._build()

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def _build(self) -> None:
        test_db = os.environ.get("TEST_DATABASE_URL", "")
        redis_url = os.environ.get("REDIS_URL", "")
        redis_dbs = [
            d.strip()
            for d in os.environ.get("MULTINODE_REDIS_DBS", DEFAULT_REDIS_DBS).split(",")
            if d.strip()
        ]
        if redis_url and len(redis_dbs) < len(self.names):
            raise RuntimeError(f"need {len(self.names)} Redis DBs, MULTINODE_REDIS_DBS has fewer")
        ports = {name: free_port() for name in self.names}
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
                base_name = urlsplit(test_db).path.lstrip("/")
                database_url = _replace_db(test_db, db=f"{base_name}_node_{name}")
            else:
                database_url = f"sqlite:///{directory / 'node.sqlite3'}"
            node_redis = _replace_db(redis_url, db=redis_dbs[index]) if redis_url else ""
            peers = [
                f"{other}=http://127.0.0.1:{ports[other]}"
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
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
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
        concurrent versions whose winner would end the other node's admin sessions."""
        self._prepare_backends()
        script = (
            "from django.core.management import call_command; "
            "call_command('migrate', verbosity=0, interactive=False); "
            "from django.contrib.auth import get_user_model; "
            "from configsync.replication.context import applying_remote; "
            "ctx = applying_remote(); ctx.__enter__(); "
            f"U = get_user_model(); U.objects.filter(username={ADMIN_USER!r}).exists() or "
            f"U.objects.create_superuser({ADMIN_USER!r}, 'admin@example.invalid', "
            f"{ADMIN_PASSWORD!r}); ctx.__exit__(None, None, None)"
        )
        running = {
            node.name: subprocess.Popen(
                [PYTHON, "manage.py", "shell", "-c", script],
                cwd=REPO,
                env=node.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for node in self
        }
        for name, proc in running.items():
            output, _ = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"migrate failed on node {name}:\n{output.decode()}")

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

    def destroy(self) -> None:
        """Stop every process and drop the per-node PostgreSQL databases."""
        self.stop()
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
