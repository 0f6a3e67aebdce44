"""One node served as in production: ``settings.production`` under gunicorn, on 127.0.0.1.

:func:`production_server` prepares a folder the way the README's production steps do (a real
encryption key from ``configsync keys generate``, ``migrate``, ``collectstatic``), starts
``gunicorn settings.wsgi`` (which reads ``gunicorn.conf.py``) on a free port of 127.0.0.1, waits
until it answers, and always stops it, bounded. No Redis and no Celery: the embedded defaults,
everything under the folder.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
COMMAND_TIMEOUT_SECONDS = 180.0
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def _command(
    args: list[str], env: dict[str, str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args[1:3])} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def generate_encryption_key() -> str:
    """A new key, printed (last line) by ``manage.py configsync keys generate``."""
    env = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "settings.test"}
    out = _command([sys.executable, "manage.py", "configsync", "keys", "generate"], env).stdout
    return out.rstrip("\n").split("\n")[-1]


def production_env(folder: Path) -> dict[str, str]:
    """The environment production needs, every piece of state under ``folder``.

    The cookies are not ``Secure``: the browser test signs in over plain HTTP on 127.0.0.1 (the
    README's production steps keep the secure default behind TLS).
    """
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),
        "DJANGO_SETTINGS_MODULE": "settings.production",
        "DJANGO_SECRET_KEY": f"test-only-{secrets.token_urlsafe(32)}",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "CONFIGSYNC_ENCRYPTION_KEYS": generate_encryption_key(),
        "CONFIGSYNC_VAR_DIR": str(folder / "var"),
        "DATABASE_URL": f"sqlite:///{folder / 'configsync.sqlite3'}",
        "DJANGO_SESSION_COOKIE_SECURE": "false",
        "DJANGO_CSRF_COOKIE_SECURE": "false",
    }


@dataclass
class ProductionServer:
    """A running gunicorn; ``manage()`` runs ``manage.py`` with the same environment."""

    base_url: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        """Run ``manage.py *args`` as this node (exit 0 asserted); its standard output."""
        env = {**self.env, **(extra_env or {})}
        return _command([sys.executable, "manage.py", *args], env).stdout

    def url(self, path: str) -> str:
        return self.base_url + path

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL of its group; bounded either way."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


@contextmanager
def production_server(folder: Path) -> Iterator[ProductionServer]:
    """Migrate, collect the static files, start gunicorn; yield it once it answers; stop it."""
    folder.mkdir(parents=True, exist_ok=True)
    env = production_env(folder)
    _command([sys.executable, "manage.py", "migrate", "--noinput"], env)
    _command([sys.executable, "manage.py", "collectstatic", "--noinput"], env)
    log = folder / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "settings.wsgi", "--bind", "127.0.0.1:0", "--workers", "2"],
            cwd=ROOT,  # gunicorn reads gunicorn.conf.py from the working directory
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: a stuck worker is killed with it
        )
    try:
        server = ProductionServer(base_url="", env=env, log=log, process=process)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.base_url:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited {process.returncode}:\n{server.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not listen:\n{server.logs()}")
            found = _LISTENING.search(server.logs())
            if found:
                server.base_url = f"http://127.0.0.1:{found.group(1)}"
            else:
                time.sleep(0.1)
        while True:  # listening: wait until a worker answers
            try:
                requests.get(server.url("/api/v1/health"), timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(f"gunicorn did not answer:\n{server.logs()}") from None
                time.sleep(0.1)
        yield server
    finally:
        _stop(process)
