"""The container files, validated without pulling an image (this machine cannot): the Dockerfile
read as text, its collectstatic step and its health check run here, and compose.yaml checked with
``docker compose config`` where the client has it, else parsed with PyYAML and its two nodes'
environments loaded by the production settings."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from configsync.conf import parse_peers
from configsync.crypto.keyring import generate_key, validate_key_texts
from tests.support.production_server import ProductionServer

# The container files, with environments of their own: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
NODES = {"node-a": "node-a-worker", "node-b": "node-b-worker"}
SHARED = ("CONFIGSYNC_SYNC_SECRET", "CONFIGSYNC_ENCRYPTION_KEYS")
"""What every node of the group must hold alike."""
OWN = ("CONFIGSYNC_NODE_ID", "DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL")
"""What each node holds for itself."""


# --- the Dockerfile ------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1].strip()) for text in logical]


def dockerfile_env() -> dict[str, str]:
    """The ``ENV`` the image sets (``NAME=value`` pairs)."""
    env: dict[str, str] = {}
    for keyword, argument in instructions():
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(argument))
    return env


def test_the_image_runs_as_a_user_of_its_own() -> None:
    steps = instructions()
    keywords = [keyword for keyword, _ in steps]
    assert steps[0][0] == "FROM" and re.fullmatch(r"python:3\.11-slim\S*", steps[0][1])
    users = [argument for keyword, argument in steps if keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert keywords.index("USER") < keywords.index("CMD")
    # collectstatic runs as that user, after the code is in place.
    collect = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "collectstatic" in a)
    assert keywords.index("USER") < collect
    assert max(i for i, k in enumerate(keywords) if k == "COPY") < collect


def test_the_image_serves_with_gunicorn_and_checks_its_health() -> None:
    steps = dict(instructions())
    command = json.loads(steps["CMD"])
    assert command[:2] == ["gunicorn", "settings.wsgi"]
    assert "/api/v1/health" in steps["HEALTHCHECK"]
    assert dockerfile_env()["DJANGO_SETTINGS_MODULE"] == "settings.production"
    copied = " ".join(a for k, a in instructions() if k == "COPY")
    assert "gunicorn.conf.py" in copied  # gunicorn reads it from the working directory


def dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(fnmatch.fnmatch(path, pattern.removeprefix("**/")) for pattern in patterns)


def test_every_copied_path_exists_and_reaches_the_build() -> None:
    sources = [
        source
        for keyword, argument in instructions()
        if keyword == "COPY"
        for source in shlex.split(argument)[:-1]
    ]
    assert {"pyproject.toml", "README.md", "manage.py", "configsync", "settings"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source), source
    for private in (".env", "var", ".venv", ".git"):
        assert dockerignored(private), private


def test_the_collectstatic_step_works_as_written(tmp_path: Path) -> None:
    """The Dockerfile's RUN line, run by a shell here with the image's ENV (its folder moved)."""
    command = next(a for k, a in instructions() if k == "RUN" and "collectstatic" in a)
    env = {
        **dockerfile_env(),
        "CONFIGSYNC_VAR_DIR": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        ["sh", "-c", command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())
    assert "admin/css/base.css" in manifest["paths"]


def healthcheck(server: ProductionServer, allowed_hosts: str) -> int:
    """The image's HEALTHCHECK command (exec form) against ``server``; its exit status."""
    command = json.loads(dict(instructions())["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert command[0] == "python"
    port = str(urlsplit(server.base_url).port)
    env = {"PATH": os.environ.get("PATH", ""), "PORT": port, "DJANGO_ALLOWED_HOSTS": allowed_hosts}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30
    )
    return result.returncode


def test_the_health_check_passes_on_a_healthy_node(production: ProductionServer) -> None:
    assert healthcheck(production, "127.0.0.1,localhost") == 0
    # The Host header is the first allowed host: a host this node refuses fails the check.
    assert healthcheck(production, "elsewhere.example") != 0


# --- compose.yaml --------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(\w+):([-?])([^}]*)\}")

SECRETS_FROM_ENV = (
    "CONFIGSYNC_ENCRYPTION_KEYS",
    "CONFIGSYNC_SYNC_SECRET",
    "NODE_A_SECRET_KEY",
    "NODE_B_SECRET_KEY",
)
"""What compose.yaml takes from the user's .env, with no default in the file."""


def dot_env() -> dict[str, str]:
    """A .env as compose.yaml's header says to make one (fresh values, of the same shapes)."""
    return {
        "CONFIGSYNC_ENCRYPTION_KEYS": generate_key(),
        "CONFIGSYNC_SYNC_SECRET": secrets.token_hex(32),
        "NODE_A_SECRET_KEY": secrets.token_hex(32),
        "NODE_B_SECRET_KEY": secrets.token_hex(32),
    }


def compose_file(env: dict[str, str]) -> dict[str, Any]:
    """compose.yaml as ``docker compose config`` resolves it with ``env`` (as from .env)."""
    if _docker_compose_available():
        result = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE), "config", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env},
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def interpolate(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        assert kind == "-", f"compose.yaml needs {name}: {rest}"
        return rest

    text = _INTERPOLATION.sub(interpolate, COMPOSE.read_text())
    assert "${" not in text.replace("$$", "")  # every variable is one of these forms
    return yaml.safe_load(text)


def _docker_compose_available() -> bool:
    try:
        return (
            subprocess.run(
                ["docker", "compose", "version"], capture_output=True, timeout=30
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def settings_variables() -> set[str]:
    """Every variable the settings read through ``env`` (by name, or in a loop over names), and
    Django's own ``DJANGO_SETTINGS_MODULE``."""
    names = {"DJANGO_SETTINGS_MODULE"}
    for module in (ROOT / "settings").glob("*.py"):
        text = module.read_text()
        names.update(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", text))
        for loop in re.findall(r"for _name in \(([^)]*)\)", text):
            names.update(re.findall(r"\"([A-Z][A-Z0-9_]+)\"", loop))
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_file(dot_env())


def test_two_nodes_each_with_web_and_worker_and_the_backends(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {*NODES, *NODES.values(), "postgres", "redis"}
    for web, worker in NODES.items():
        for name in (web, worker):
            assert services[name]["image"] == "configsync:local"
            build = services[name]["build"]
            context = build if isinstance(build, str) else build["context"]
            assert Path(ROOT, context).resolve() == ROOT
        web_command = " ".join(services[web]["command"])
        assert "migrate" in web_command and "gunicorn settings.wsgi" in web_command
        worker_command = services[worker]["command"]
        assert worker_command[:4] == ["celery", "-A", "settings", "worker"]
        assert "--beat" in worker_command  # the periodic sync
        # The worker has a check of its own (the image's is the web process's).
        assert "celery" in " ".join(services[worker]["healthcheck"]["test"])
        assert environment(services[web]) == environment(services[worker])


def test_every_variable_is_one_the_settings_read(compose: dict[str, Any]) -> None:
    known = settings_variables()
    for name in [*NODES, *NODES.values()]:
        unknown = set(environment(compose["services"][name])) - known
        assert not unknown, (name, unknown)


def test_the_nodes_share_the_group_secrets_and_nothing_of_their_own(
    compose: dict[str, Any],
) -> None:
    a, b = (environment(compose["services"][name]) for name in NODES)
    for name in SHARED:
        assert a[name] and a[name] == b[name], name
    validate_key_texts(a["CONFIGSYNC_ENCRYPTION_KEYS"].split(","))
    for name in OWN:
        assert a[name] != b[name], name
    assert a["DJANGO_SETTINGS_MODULE"] == b["DJANGO_SETTINGS_MODULE"] == "settings.production"


def test_the_nodes_are_each_others_peers_by_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    names = list(NODES)
    for this, other in (names, names[::-1]):
        env = environment(services[this])
        [(peer, url)] = parse_peers(env["CONFIGSYNC_PEERS"])
        assert peer == environment(services[other])["CONFIGSYNC_NODE_ID"]
        host = urlsplit(url).hostname
        network = services[other]["networks"]["default"]
        assert host in {other, *network["aliases"]}, host  # resolves to the other web service
        assert urlsplit(url).port == 8000  # the port gunicorn listens on inside
        assert host in environment(services[other])["DJANGO_ALLOWED_HOSTS"].split(",")


def test_each_node_has_its_own_database_on_the_one_server(compose: dict[str, Any]) -> None:
    services = compose["services"]
    created = set(
        re.findall(r"CREATE DATABASE (\w+)", Path(ROOT, "compose.postgres-init.sql").read_text())
    )
    created.add(services["postgres"]["environment"]["POSTGRES_DB"])
    databases = set()
    for name in NODES:
        url = urlsplit(environment(services[name])["DATABASE_URL"])
        assert url.hostname == "postgres"
        databases.add(url.path.lstrip("/"))
        assert urlsplit(environment(services[name])["REDIS_URL"]).hostname == "redis"
    assert databases == created and len(databases) == 2


def test_no_secret_is_published_in_the_file() -> None:
    """Each secret comes from the user's .env, required: compose.yaml once shipped working
    defaults, so a pair deployed from it ran on an encryption key anyone could read."""
    text = COMPOSE.read_text()
    for name in SECRETS_FROM_ENV:
        assert re.search(rf": \$\{{{name}:\?", text), name
        assert not re.search(rf"\$\{{{name}:-", text), name
    with pytest.raises(AssertionError, match=r"compose\.yaml needs"):
        compose_file({})


def test_the_headers_recipe_makes_values_the_nodes_accept() -> None:
    """The .env recipe in compose.yaml's header, run here: the key it makes is a valid key."""
    lines = [
        line.lstrip("# ").strip()
        for line in COMPOSE.read_text().splitlines()
        if re.match(r"#\s+[A-Z_]+=\$\(", line)
    ]
    assert {line.split("=", 1)[0] for line in lines} == set(SECRETS_FROM_ENV)
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    values = {}
    for line in lines:
        name, command = line.split("=", 1)
        result = subprocess.run(
            ["sh", "-c", f"printf '%s' {command}"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stderr
        values[name] = result.stdout
    validate_key_texts([values["CONFIGSYNC_ENCRYPTION_KEYS"]])
    assert all(len(value) >= 32 for value in values.values())


@pytest.mark.parametrize("node", list(NODES))
def test_each_nodes_environment_loads_the_production_settings(
    compose: dict[str, Any], node: str, tmp_path: Path
) -> None:
    """What the container would do first: load the settings with the image's and the service's
    environment (the folder moved here). No connection is made: the hosts exist only there."""
    env = {
        **dockerfile_env(),
        **environment(compose["services"][node]),
        "CONFIGSYNC_VAR_DIR": str(tmp_path),
        "PATH": os.environ.get("PATH", ""),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DATABASES['default']['NAME'], settings.CELERY_BROKER_URL)",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    database, broker = result.stdout.split()
    assert database == urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    assert broker == env["REDIS_URL"]
