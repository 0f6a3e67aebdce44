"""Secret-leak canaries: secrets stored through every entry point never come out of any sink.

``planted`` (module-scoped, one transaction rolled back at the end) stores canary secrets
(``tests.support.canaries``: ``sk-CANARY-<label>-<random>``, some ending in ``/+=é`` so that their
encoded forms differ) through every way in: the admin's forms (a setting, a provider key, a user's
password), REST with the write scope, the command line (``set``, ``provider set``, ``env
import``, ``createsuperuser``), the .env bridge, the Python API (the services and the lookups),
replication (a signed push from a peer, a conflict), and provider credentials. While it does, a
handler on the root logger and on every logger that does not propagate records everything at
DEBUG through the same masking filter as the configured handlers, and a ``before_task_publish``
receiver keeps every Celery message published; the tasks are then run here.

Each test below scans one sink explicitly, so a leak fails where it is: the entry points' own
answers, admin HTML (every page the admin links to), API answers without the reveal scope,
Celery messages and the broker's storage, the audit trail, snapshots and promoted snapshots,
bucket objects (moto's server), error pages (400/404/500, ``DEBUG`` off), and last the logs.
``tests/test_secret_paths.py`` proves the write paths' authorization rules and
``tests/test_logging.py`` the masking filter itself; this module proves the outcome.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import pytest
from celery import signals as celery_signals
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.test import Client, TestCase, override_settings
from django.urls import path
from rest_framework.test import APIClient

import configsync
from configsync.crypto.fields import encryption_context_for
from configsync.crypto.keyring import get_keyring
from configsync.logging import SecretMaskingFilter
from configsync.models import AuditEvent, QuarantinedChange, SystemConfig
from configsync.replication.signing import sign
from configsync.services.system_config import system_config_set
from multinode.cluster import free_port
from providers.models import AIProviderConfig
from settings.urls import urlpatterns as project_urlpatterns
from tests.support.admin import provider_form, setting_form
from tests.support.api import key_client
from tests.support.canaries import CanarySet, assert_no_canary, canary_forms, canary_make
from tests.support.conflicts import setting_conflict
from tests.support.kit_bucket import BucketServer, shared_bucket_server
from tests.support.replication import LOCAL, REMOTE, config_data, provider_data, remote_change
from tests.support.replication import SECRET as SYNC_SECRET

SYSTEM = "/api/v1/configs/system/"
PROVIDERS = "/api/v1/configs/ai-providers/"
PAGES_MAX = 400


def _boom(request: Any) -> Any:
    raise RuntimeError(f"failed while holding {request.GET.get('token', '')}")


urlpatterns = [path("canary-500/", _boom), *project_urlpatterns]
"""The project's URLs and one view that fails with a canary in its exception (for the 500)."""


# --- what the entry points leave behind ------------------------------------------------------


@dataclass
class Planted:
    canaries: CanarySet
    folder: Path
    staff: Client
    reader: APIClient
    writer: APIClient
    revealer: APIClient
    answers: list[tuple[str, bytes]] = field(default_factory=list)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    log: io.StringIO = field(default_factory=io.StringIO)
    settings_keys: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)

    def keep(self, where: str, data: str | bytes) -> None:
        self.answers.append((where, data.encode() if isinstance(data, str) else data))


@contextlib.contextmanager
def _debug_log_capture(buffer: io.StringIO) -> Iterator[None]:
    """Everything logged, at DEBUG, as a configured handler would write it (same filter)."""
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.addFilter(SecretMaskingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and (not logger.propagate or logger.level)
    ]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        if logger is loggers[0] or not logger.propagate:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)
            logger.removeHandler(handler)


@contextlib.contextmanager
def _published(into: list[tuple[str, bytes]]) -> Iterator[None]:
    """Every Celery message published: its headers and body, as the broker receives them."""

    def receiver(sender: Any = None, headers: Any = None, body: Any = None, **kwargs: Any) -> None:
        into.append((str(sender), json.dumps([headers, body], default=repr).encode()))

    celery_signals.before_task_publish.connect(receiver, weak=False)
    try:
        yield
    finally:
        celery_signals.before_task_publish.disconnect(receiver)


def _cli(planted: Planted, where: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``manage.py configsync *args`` (or another command) here; keep what it printed."""
    out, err = io.StringIO(), io.StringIO()
    command, *rest = args if args[0] in ("createsuperuser",) else ("configsync", *args)
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(out),
            contextlib.suppress(SystemExit),
        ):
            call_command(command, *rest, stdout=out, stderr=err)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    planted.keep(f"{where}: stdout", out.getvalue())
    planted.keep(f"{where}: stderr", err.getvalue())
    return out.getvalue()


def _signed_push(changes: list[dict[str, Any]]) -> Any:
    raw = json.dumps({"changes": changes}).encode()
    headers = sign(
        secret=SYNC_SECRET, method="POST", path="/api/v1/sync/push", body=raw, node=REMOTE
    )
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return APIClient().generic(
        "POST", "/api/v1/sync/push", raw, content_type="application/json", **extra
    )


def _token(label: str, field_name: str, key: str, plain: str) -> str:
    context = encryption_context_for(model_label=label, field_name=field_name, natural_key=key)
    return get_keyring().encrypt(plain, context=context)


def _plant(p: Planted) -> None:
    c = p.canaries

    # The admin: a setting, a provider's key, a user's password (add, then change).
    value = c.make("admin-setting", special=True)
    answer = p.staff.post(
        "/admin/configsync/systemconfig/add/",
        {"key": "ADMIN_TOKEN", "value_type": "str", "value": value, "is_sensitive": "on"},
    )
    assert answer.status_code == 302, answer.content[:2000]
    p.keep("admin: add setting", answer.content)
    answer = p.staff.post(
        "/admin/providers/aiproviderconfig/add/",
        {
            "name": "admin-prov",
            "kind": "openai",
            "api_key": c.make("admin-provider"),
            "default_model": "gpt-4o-mini",
            "enabled": "on",
        },
    )
    assert answer.status_code == 302, answer.content[:2000]
    password = c.make("admin-password", special=True)
    answer = p.staff.post(
        "/admin/auth/user/add/",
        {
            "username": "canary-user",
            "usable_password": "true",
            "password1": password,
            "password2": password,
        },
    )
    assert answer.status_code == 302, answer.content[:2000]
    user = get_user_model().objects.get(username="canary-user")
    assert user.check_password(password)
    changed = c.make("admin-password-change")
    answer = p.staff.post(
        f"/admin/auth/user/{user.pk}/password/", {"password1": changed, "password2": changed}
    )
    assert answer.status_code == 302, answer.content[:2000]
    # Refused admin forms render the form again: the secret typed in must not come back.
    answer = p.staff.post(
        "/admin/configsync/systemconfig/add/",
        {
            "key": "ADMIN_BAD",
            "value_type": "int",
            "value": c.make("admin-invalid"),
            "is_sensitive": "on",
        },
    )
    assert answer.status_code == 200 and not SystemConfig.objects.filter(key="ADMIN_BAD").exists()
    p.keep("admin: add form refusing a secret that is not an int", answer.content)
    answer = p.staff.post(
        "/admin/providers/aiproviderconfig/add/",
        {"name": "bad prov!", "kind": "openai", "api_key": c.make("admin-provider-invalid")},
    )
    assert answer.status_code == 200
    p.keep("admin: provider add form refused", answer.content)
    # Change forms refused as stale (edited elsewhere since) or invalid, with a new secret typed.
    record = SystemConfig.objects.get(key="ADMIN_TOKEN")
    change = f"/admin/configsync/systemconfig/{record.pk}/change/"
    for where, form in (
        ("stale", setting_form(record, value=c.make("admin-stale"), version="stale-version")),
        ("not an int", setting_form(record, value=c.make("admin-change-int"), value_type="int")),
    ):
        answer = p.staff.post(change, form)
        assert answer.status_code == 200, (where, answer.status_code)
        p.keep(f"admin: setting change form refused ({where})", answer.content)
    prov = AIProviderConfig.objects.get(name="admin-prov")
    answer = p.staff.post(
        f"/admin/providers/aiproviderconfig/{prov.pk}/change/",
        provider_form(prov, api_key=c.make("admin-provider-stale"), version="stale-version"),
    )
    assert answer.status_code == 200
    p.keep("admin: provider change form refused (stale)", answer.content)
    assert SystemConfig.objects.get(key="ADMIN_TOKEN").secret_value == value
    p.settings_keys += ["ADMIN_TOKEN"]
    p.providers += ["admin-prov"]

    # REST with the write scope (no reveal).
    for body in (
        {"key": "REST_TOKEN", "value": c.make("rest-create", special=True), "is_sensitive": True},
        {"key": "REST_API_KEY", "value": c.make("rest-by-pattern")},  # sensitive by its name
    ):
        answer = p.writer.post(SYSTEM, body, format="json")
        assert answer.status_code == 201, answer.content
        p.keep(f"REST: create {body['key']}", answer.content)
    answer = p.writer.patch(
        f"{SYSTEM}REST_TOKEN/", {"value": c.make("rest-patch", special=True)}, format="json"
    )
    assert answer.status_code == 200, answer.content
    p.keep("REST: patch", answer.content)
    answer = p.writer.post(
        PROVIDERS,
        {"name": "rest-prov", "kind": "anthropic", "api_key": c.make("rest-provider")},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    p.keep("REST: create provider", answer.content)
    for where, body in (
        (
            "not an int",
            {
                "key": "REST_BAD",
                "value": c.make("rest-invalid"),
                "value_type": "int",
                "is_sensitive": True,
            },
        ),
        (
            "not a url",
            {
                "key": "REST_BAD_URL",
                "value": c.make("rest-invalid-url"),
                "value_type": "url",
                "is_sensitive": True,
            },
        ),
    ):
        answer = p.writer.post(SYSTEM, body, format="json")
        assert answer.status_code == 400, answer.content
        p.keep(f"REST: 400 for a secret that is {where}", answer.content)
    answer = p.writer.patch(
        f"{SYSTEM}REST_TOKEN/",
        {"value": c.make("rest-patch-invalid"), "value_type": "bool"},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    p.keep("REST: 400 for a patch that is not a bool", answer.content)
    p.settings_keys += ["REST_TOKEN", "REST_API_KEY"]
    p.providers += ["rest-prov"]

    # The command line.
    _cli(p, "CLI set", "set", "CLI_TOKEN", c.make("cli-set", special=True), "--sensitive")
    _cli(
        p,
        "CLI set, invalid",
        "set",
        "CLI_BAD",
        c.make("cli-invalid"),
        "--sensitive",
        "--type",
        "int",
    )
    assert not SystemConfig.objects.filter(key="CLI_BAD").exists()
    _cli(
        p,
        "CLI provider set",
        "provider",
        "set",
        "cli-prov",
        "--kind",
        "openai",
        "--api-key",
        c.make("cli-provider"),
    )
    _cli(
        p,
        "createsuperuser",
        "createsuperuser",
        "--noinput",
        "--username",
        "canary-root",
        "--email",
        "root@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": c.make("cli-superuser-password")},
    )
    assert get_user_model().objects.filter(username="canary-root").exists()
    p.settings_keys += ["CLI_TOKEN"]
    p.providers += ["cli-prov"]

    # The .env bridge: a file imported by the command line, then kept in sync by the task.
    env_file = Path(settings.CONFIGSYNC_ENV_FILE)
    env_file.write_text(
        f"ENV_API_KEY={c.make('env-by-pattern')}\n"
        f"ENV_DB_PASSWORD='{c.make('env-quoted', special=True)}'\n"
    )
    _cli(p, "CLI env import", "env", "import", "--file", str(env_file))
    assert SystemConfig.objects.get(key="ENV_API_KEY").is_sensitive
    _cli(p, "CLI env diff", "env", "diff", "--file", str(env_file))
    p.settings_keys += ["ENV_API_KEY", "ENV_DB_PASSWORD"]

    # The Python API: the service, then the lookups read it back (decrypting it here).
    secret = c.make("python-service", special=True)
    system_config_set(key="PY_SECRET", value=secret, is_sensitive=True, actor="test:canary")
    assert configsync.get_system_config("PY_SECRET") == secret
    assert secret == configsync.config.PY_SECRET
    p.settings_keys += ["PY_SECRET"]

    # Replication: a signed push from a peer (a setting and a provider key), and a conflict.
    key, name = "REPL_TOKEN", "repl-prov"
    changes = [
        remote_change(
            key,
            data=config_data(
                key,
                "",
                is_sensitive=True,
                secret_value=_token(
                    "configsync.systemconfig",
                    "secret_value",
                    key,
                    c.make("repl-setting", special=True),
                ),
            ),
        ),
        remote_change(
            name,
            model="providers.aiproviderconfig",
            data=provider_data(
                name,
                api_key=_token(
                    "providers.aiproviderconfig", "api_key", name, c.make("repl-provider")
                ),
            ),
        ),
    ]
    answer = _signed_push(changes)
    assert answer.status_code == 200, answer.content
    assert [r["status"] for r in answer.json()["results"]] == ["applied", "applied"]
    p.keep("sync push: answer", answer.content)
    assert AIProviderConfig.objects.get(name=name).api_key.startswith("sk-CANARY-repl-provider")
    # A peer's malformed items holding a secret in plain: quarantined, never stored or shown.
    malformed = [
        remote_change(
            "BAD_PLAIN",
            data=config_data(
                "BAD_PLAIN", c.make("repl-plain-value", special=True), is_sensitive=True
            ),
        ),
        remote_change(
            "BAD_TOKEN",
            data=config_data(
                "BAD_TOKEN", "", is_sensitive=True, secret_value=c.make("repl-not-a-token")
            ),
        ),
        remote_change(
            "bad-prov",
            model="providers.aiproviderconfig",
            data=provider_data("bad-prov", api_key=c.make("repl-provider-not-a-token")),
        ),
    ]
    answer = _signed_push(malformed)
    assert answer.status_code == 200, answer.content
    assert {r["status"] for r in answer.json()["results"]} == {"quarantined"}
    p.keep("sync push: answer quarantining", answer.content)
    for item in QuarantinedChange.objects.all():
        _cli(p, f"CLI quarantine retry {item.natural_key}", "quarantine", "retry", str(item.pk))
    _cli(p, "CLI quarantine --json --all", "quarantine", "--json", "--all")
    setting_conflict(
        "CONFLICT_TOKEN",
        local=c.make("conflict-local"),
        remote=c.make("conflict-remote", special=True),
        sensitive=True,
    )
    p.settings_keys += [key, "CONFLICT_TOKEN"]
    p.providers += [name]

    # Operations that read every record: history, export, list, status, audit.
    for args in (
        ("list", "--json"),
        ("get", "CLI_TOKEN"),
        ("history", "REST_TOKEN", "--json"),
        ("export", "--format", "json"),
        ("export", "--format", "env"),
        ("provider", "list", "--json"),
        ("status", "--json"),
        ("conflicts", "--json"),
        ("audit", "--json"),
    ):
        _cli(p, "CLI " + " ".join(args), *args)


def _run_published(p: Planted, seen: int) -> int:
    """Run here every task published since ``seen`` (as a worker would), once each."""
    from settings.celery import app

    for sender, raw in p.messages[seen:]:
        _, body = json.loads(raw)
        args, kwargs = body[0], body[1]
        task = app.tasks.get(sender)
        if task is not None and sender != "configsync.tasks.snapshot_to_bucket":
            task.apply(args=args, kwargs=kwargs)
    return len(p.messages)


@pytest.fixture(scope="module")
def planted(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Planted]:
    folder = tmp_path_factory.mktemp("canaries")
    canaries = CanarySet()
    with contextlib.ExitStack() as stack:
        stack.enter_context(django_db_blocker.unblock())
        stack.enter_context(
            override_settings(
                ROOT_URLCONF=__name__,
                DEBUG=False,
                CONFIGSYNC_NODE_ID=LOCAL,
                CONFIGSYNC_SYNC_SECRET=SYNC_SECRET,
                CONFIGSYNC_PEERS=[],
                CONFIGSYNC_ENV_FILE=str(folder / ".env"),
                CONFIGSYNC_DATA_CALLBACK_URL=f"http://127.0.0.1:{free_port()}/callback",
            )
        )
        log = io.StringIO()
        stack.enter_context(_debug_log_capture(log))
        stack.enter_context(transaction.atomic())
        staff = get_user_model().objects.create_superuser("canary-staff", password="unused")
        client = Client()
        client.force_login(staff)
        p = Planted(
            canaries=canaries,
            folder=folder,
            staff=client,
            reader=key_client(name="canary-reader"),
            writer=key_client(write=True, name="canary-writer"),
            revealer=key_client(reveal=True, name="canary-revealer"),
            log=log,
        )
        stack.enter_context(_published(p.messages))
        with TestCase.captureOnCommitCallbacks(execute=True):
            _plant(p)
        seen = _run_published(p, 0)
        # A sync trigger and the data callback's task: more messages, run here too.
        answer = p.writer.post("/api/v1/sync/trigger")
        p.keep("REST: sync trigger", answer.content)
        _run_published(p, seen)
        yield p
        transaction.set_rollback(True)


@pytest.fixture
def p(planted: Planted, db: None) -> Planted:
    return planted


# --- the sinks ---------------------------------------------------------------------------------


def test_every_entry_point_stored_its_canary(p: Planted) -> None:
    """The plant worked: each setting and provider holds its canary (the scans mean something)."""
    for key in p.settings_keys:
        record = SystemConfig.objects.get(key=key)
        value = record.secret_value
        assert record.is_sensitive, key
        assert isinstance(value, str) and value.startswith("sk-CANARY-"), key
    for name in p.providers:
        assert AIProviderConfig.objects.get(name=name).api_key.startswith("sk-CANARY-"), name
    assert len(p.canaries) >= 20


def test_the_entry_points_answers_hold_no_canary(p: Planted) -> None:
    for where, data in p.answers:
        assert_no_canary(data, where=where, canaries=p.canaries)


def _admin_pages(client: Client) -> Iterator[tuple[str, bytes]]:
    """Every admin page reachable by GET from the index (query strings dropped), bounded."""
    queue, seen = ["/admin/"], {"/admin/"}
    skip = re.compile(r"/(logout|delete|password|rollback/\d+)/?$|/add/$|^/admin/r/")
    while queue and len(seen) < PAGES_MAX:
        url = queue.pop(0)
        answer = client.get(url)
        yield url, answer.content
        if answer.status_code != 200 or "html" not in answer.get("Content-Type", ""):
            continue
        for href in re.findall(rb'href="([^"#]+)"', answer.content):
            target = urlsplit(urljoin(url, href.decode())).path
            if target.startswith("/admin/") and target not in seen and not skip.search(target):
                seen.add(target)
                queue.append(target)


def test_admin_pages_hold_no_canary(p: Planted) -> None:
    """Index (dashboard), change lists, change forms, history, versions, conflict and quarantine
    pages, the sync overview: every page the admin links to."""
    visited = []
    for url, content in _admin_pages(p.staff):
        visited.append(url)
        assert_no_canary(content, where=f"admin page {url}", canaries=p.canaries)
    for needed in ("/history/", "/change/", "/versions/", "/conflict/", "overview"):
        assert any(needed in url for url in visited), (needed, visited)


def _api_reads(p: Planted) -> list[str]:
    urls = [
        SYSTEM,
        PROVIDERS,
        "/api/v1/sync/status",
        "/api/v1/sync/strategies",
        "/api/v1/sync/conflicts/",
        "/api/v1/sync/quarantine/",
        "/api/v1/sync/log",
        "/api/v1/health",
        "/metrics",
        "/",
    ]
    for key in p.settings_keys:
        urls += [f"{SYSTEM}{key}/", f"{SYSTEM}{key}/history/"]
    for name in p.providers:
        urls += [f"{PROVIDERS}{name}/", f"{PROVIDERS}{name}/history/"]
    return urls


@pytest.mark.parametrize("role", ["reader", "writer", "staff"])
def test_api_answers_without_reveal_hold_no_canary(p: Planted, role: str) -> None:
    """Read and write keys (no reveal scope) get masked values, with or without ``?reveal``;
    so does a staff session that does not ask to reveal."""
    client = p.staff if role == "staff" else getattr(p, role)
    for url in _api_reads(p):
        asks = [url] if role == "staff" else [url, f"{url}?reveal=true"]
        for asked in asks:
            answer = client.get(asked)
            assert answer.status_code < 500, (asked, answer.status_code)
            assert_no_canary(answer.content, where=f"GET {asked} as {role}", canaries=p.canaries)


def test_the_reveal_scope_does_reveal(p: Planted) -> None:
    """The control: the same reads with the reveal scope do show the secrets (the scan works)."""
    answer = p.revealer.get(f"{SYSTEM}REST_TOKEN/?reveal=true")
    assert answer.status_code == 200
    with pytest.raises(AssertionError, match="rest-patch") as failure:
        assert_no_canary(answer.content, where="reveal", canaries=p.canaries)
    assert "sk-CANARY-rest-patch-" not in str(failure.value)


def test_celery_messages_and_the_broker_hold_no_canary(p: Planted) -> None:
    names = {sender for sender, _ in p.messages}
    assert {"configsync.tasks.env_sync", "configsync.tasks.notify_data_callback"} <= names, names
    for sender, raw in p.messages:
        assert_no_canary(raw, where=f"Celery message of {sender}", canaries=p.canaries)
    for where, data in _broker_contents():
        assert_no_canary(data, where=where, canaries=p.canaries)


def _redis_value(client: Any, name: bytes) -> bytes:
    """Everything a Redis key holds, whatever its type, as one blob."""
    kind = client.type(name).decode()
    if kind == "string":
        values = [client.get(name)]
    elif kind == "list":
        values = client.lrange(name, 0, -1)
    elif kind == "hash":
        values = [v for pair in client.hgetall(name).items() for v in pair]
    elif kind == "set":
        values = list(client.smembers(name))
    elif kind == "zset":
        values = client.zrange(name, 0, -1)
    else:
        values = []
    return b"\n".join(v for v in values if v)


def _broker_contents() -> Iterator[tuple[str, bytes]]:
    """What the broker holds now: every Redis key's value, or every file of the embedded one."""
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url)
        try:
            for name in client.scan_iter(count=1000):
                yield f"broker key {name.decode(errors='replace')}", _redis_value(client, name)
        finally:
            client.close()
    else:
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]).parent
        for file in folder.rglob("*"):
            if file.is_file():
                yield f"broker file {file.relative_to(folder)}", file.read_bytes()


def test_the_audit_trail_holds_no_canary(p: Planted) -> None:
    events = list(AuditEvent.objects.values())
    assert len(events) >= 10
    for event in events:
        assert_no_canary(
            json.dumps(event, default=str), where=f"audit event {event['id']}", canaries=p.canaries
        )
    answer = p.revealer.get("/api/v1/audit/")
    assert answer.status_code == 200
    assert_no_canary(answer.content, where="GET /api/v1/audit/ (reveal scope)", canaries=p.canaries)


def test_snapshots_and_promoted_snapshots_hold_no_canary(p: Planted) -> None:
    snapshot = p.folder / "snapshot.json"
    _cli(p, "CLI snapshot", "snapshot", "--output", str(snapshot))
    assert snapshot.stat().st_size > 1000
    assert_no_canary(snapshot.read_bytes(), where="snapshot file", canaries=p.canaries)
    for mode in ("full", "content-only"):
        promoted = p.folder / f"promoted-{mode}.json"
        _cli(
            p,
            f"CLI promote {mode}",
            "promote",
            "--from",
            str(snapshot),
            "--mode",
            mode,
            "--output",
            str(promoted),
        )
        assert promoted.stat().st_size > 100, mode
        assert_no_canary(
            promoted.read_bytes(), where=f"promoted snapshot ({mode})", canaries=p.canaries
        )
    for where, data in p.answers[-6:]:
        assert_no_canary(data, where=where, canaries=p.canaries)


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> Iterator[tuple[BucketServer, str]]:
    server = shared_bucket_server(request.config)
    name = server.create_bucket()
    overrides: dict[str, Any] = {}

    class _Collect:
        def __setattr__(self, key: str, value: Any) -> None:
            overrides[key] = value

    server.settings(_Collect(), name)
    with override_settings(
        **overrides,
        CONFIGSYNC_GROUP_ID="grp",
        CONFIGSYNC_R2_PREFIX="cs",
        CONFIGSYNC_DEPLOYMENT_MODE="LOCAL_R2",
        CONFIGSYNC_SNAPSHOT_INTERVAL_SECONDS=3600,
    ):
        yield server, name


def test_bucket_objects_hold_no_canary(p: Planted, bucket: tuple[BucketServer, str]) -> None:
    """A scheduled snapshot and a sync cycle through the bucket transport write objects."""
    from configsync.tasks import snapshot_to_bucket

    server, name = bucket
    assert snapshot_to_bucket.apply().result is True
    _cli(p, "CLI sync (bucket)", "sync")
    client = server.client()
    try:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=name).get("Contents", ())]
        assert any("/backups/" in k for k in keys) and len(keys) >= 2, keys
        for key in keys:
            body = client.get_object(Bucket=name, Key=key)["Body"].read()
            assert_no_canary(body, where=f"bucket object {key}", canaries=p.canaries)
            assert_no_canary(key, where="bucket object key", canaries=p.canaries)
    finally:
        client.close()


ERRORS: list[tuple[str, int, Callable[[Planted, str], Any]]] = [
    # The admin answers a missing object with a redirect and a message naming its id.
    (
        "404 admin",
        200,
        lambda p, c: p.staff.get(f"/admin/configsync/systemconfig/{c}/change/", follow=True),
    ),
    ("404 api", 404, lambda p, c: p.writer.get(f"{SYSTEM}{c}/")),
    ("404 page", 404, lambda p, c: Client().get(f"/nowhere/{c}/?token={c}")),
    (
        "400 json",
        400,
        lambda p, c: p.writer.generic(
            "POST", SYSTEM, '{"key": "X", "value": "' + c + '"', content_type="application/json"
        ),
    ),
    (
        "400 unknown field",
        400,
        lambda p, c: p.writer.post(
            SYSTEM, {"key": "X_TOKEN", c: c, "value": c, "is_sensitive": True}, format="json"
        ),
    ),
    (
        "400 unknown provider field",
        400,
        lambda p, c: p.writer.post(
            PROVIDERS, {"name": "x", "kind": "openai", c: "x"}, format="json"
        ),
    ),
    ("400 host", 400, lambda p, c: Client().get(f"/?token={c}", HTTP_HOST="bad_host.invalid")),
    ("401 bad key", 401, lambda p, c: Client().get(SYSTEM, HTTP_AUTHORIZATION=f"Api-Key {c}")),
    ("500", 500, lambda p, c: Client(raise_request_exception=False).get(f"/canary-500/?token={c}")),
]


@pytest.mark.parametrize(("what", "status", "request_"), ERRORS, ids=[e[0] for e in ERRORS])
def test_error_pages_hold_no_canary(
    p: Planted, what: str, status: int, request_: Callable[[Planted, str], Any]
) -> None:
    """With ``DEBUG`` off, an error page never echoes a secret the request carried."""
    value = p.canaries.make(what.replace(" ", "-"), special=True)
    answer = request_(p, value)
    assert answer.status_code == status, (what, answer.status_code, answer.content[:300])
    assert_no_canary(answer.content, where=f"{what} error page", canaries=p.canaries)


def test_logs_at_debug_hold_no_canary(p: Planted) -> None:
    """Last: everything logged at DEBUG while this module ran, as the configured handlers
    write it."""
    text = p.log.getvalue()
    assert "DEBUG" in text and "configsync" in text
    for number, line in enumerate(text.splitlines(), 1):
        assert_no_canary(line, where=f"log line {number}", canaries=p.canaries)


def test_the_session_log_watch_finds_an_encoded_canary(request: pytest.FixtureRequest) -> None:
    """The control of ``tests/conftest.py``'s watch: a canary logged base64-encoded at an odd
    alignment, where no masking can see it, is caught, named, and not printed."""
    watch = request.config.pluginmanager.get_plugin("canary-log-watch")
    value = canary_make("log-watch-probe")
    blob = base64.b64encode(b"xy" + value.encode()).decode()
    logging.getLogger("some.library").warning("sending %s", blob)
    found = watch.handler.take()  # taken here, so this test does not fail on it
    assert len(found) == 1 and "'log-watch-probe'" in found[0] and "base64" in found[0]
    assert value not in found[0] and blob not in found[0]


# --- the scanner itself ---------------------------------------------------------------------


def _encoded_in_a_blob(value: str, how: str, shift: int) -> bytes:
    blob = b"h" * shift + value.encode() + b"tail!"
    return {
        "base64": base64.b64encode(blob),
        "base64 unpadded": base64.b64encode(blob).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(blob),
        "url": quote(f"x={value}", safe="").encode(),
        "form": urlencode({"x": value}).encode(),
        "json": json.dumps({"x": value}).encode(),
        "repr": repr({"x": value.encode()}).encode(),
    }[how]


@pytest.mark.parametrize("shift", [0, 1, 2])
@pytest.mark.parametrize(
    "how", ["base64", "base64 unpadded", "base64url", "url", "form", "json", "repr"]
)
def test_the_scanner_finds_every_form_and_never_prints_the_canary(how: str, shift: int) -> None:
    canaries = CanarySet()
    value = canaries.make("probe", special=True)
    data = b"before " + _encoded_in_a_blob(value, how, shift) + b" after"
    with pytest.raises(AssertionError, match=r"in the probe sink:") as failure:
        assert_no_canary(data, where="the probe sink", canaries=canaries)
    message = str(failure.value)
    assert "'probe'" in message and "<canary:probe:" in message
    for form in canary_forms(value).values():
        assert form.decode("utf-8", "replace") not in message
    assert_no_canary(b"before sk-CANARY-probe after", where="clean", canaries=canaries)


def test_the_database_holds_no_canary_in_plain(p: Planted) -> None:
    """Encrypted at rest: no row of any table holds a canary in any form (tokens only)."""
    from django.apps import apps

    for model in apps.get_models():
        for row in model._default_manager.values():
            text = json.dumps(row, default=str)
            assert_no_canary(
                text, where=f"table {model._meta.db_table} row {row.get('id')}", canaries=p.canaries
            )
