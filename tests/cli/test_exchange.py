"""``configsync export|import|run``: round trips in every format, the reveal right, bad input.

A "fresh node" is this test's database with every setting deleted after the export.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import dotenv
import pytest
import yaml
from django.core.management import call_command
from django.test import override_settings

from configsync.conf import app_settings
from configsync.models import AuditEvent, SystemConfig
from configsync.services.system_config import system_config_set

pytestmark = pytest.mark.django_db

TRICKY = "a 'quoted' \"double\" $HOME #not-a-comment\\back\nsecond line \u00e9"


def _seed(canary: str) -> dict[str, tuple[Any, str, bool]]:
    """Settings of every type; returns key -> (typed value, type, sensitive)."""
    table: dict[str, tuple[Any, str, bool]] = {
        "SITE_NAME": (TRICKY, "str", False),
        "EMPTY": ("", "str", False),
        "WORKERS": (4, "int", False),
        "RATIO": (0.25, "float", False),
        "DEBUG_TOOLBAR": (True, "bool", False),
        "FEATURES": ({"beta": True, "list": [1, "two", None]}, "json", False),
        "HOMEPAGE": ("https://example.com/a?b=c", "url", False),
        "YES_WORD": ("yes", "str", False),
        "API_TOKEN": (canary, "str", True),
    }
    for key, (value, value_type, sensitive) in table.items():
        system_config_set(
            key=key,
            value=value,
            value_type=value_type,
            is_sensitive=sensitive,
            category="web" if key != "WORKERS" else "jobs",
            description=f"about {key}",
        )
    return table


def _snapshot() -> dict[str, tuple[str, str, bool, str, str]]:
    return {
        r.key: (r.raw_value(), r.value_type, r.is_sensitive, r.category, r.description)
        for r in SystemConfig.objects.all()
    }


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip_reproduces_every_value(cli: Any, canary: str, tmp_path: Path, fmt: str) -> None:
    _seed(canary)
    before = _snapshot()
    exported = cli("export", "--format", fmt, "--reveal")
    assert exported.code == 0, exported.err
    assert AuditEvent.objects.filter(action="reveal", natural_key="API_TOKEN").count() == 1
    if fmt == "json":
        entries = json.loads(exported.out)
        assert set(entries[0]) == {
            "key", "value", "value_type", "is_sensitive", "category", "description"
        }  # fmt: skip
        assert {e["key"]: e["value"] for e in entries}["WORKERS"] == 4
    path = tmp_path / f"settings.{fmt}"
    path.write_text(exported.out, encoding="utf-8")
    SystemConfig.objects.all().delete()

    imported = cli("import", str(path))
    assert imported.code == 0, imported.err
    assert _snapshot() == before


def test_env_round_trip_reads_back_in_python_dotenv(cli: Any, canary: str, tmp_path: Path) -> None:
    _seed(canary)
    before = _snapshot()
    exported = cli("export", "--format", "env", "--reveal")
    assert exported.code == 0, exported.err
    path = tmp_path / "settings.env"
    path.write_text(exported.out, encoding="utf-8")
    read = dotenv.dotenv_values(path, interpolate=False)
    assert read == {key: raw for key, (raw, *_rest) in before.items()}

    SystemConfig.objects.all().delete()
    assert cli("import", str(path)).code == 0
    # env carries values only: every value comes back as text.
    assert {k: r[0] for k, r in _snapshot().items()} == {k: r[0] for k, r in before.items()}
    assert SystemConfig.objects.get(key="API_TOKEN").is_sensitive  # the secret rule


def test_export_masks_secrets_without_reveal_and_audits_nothing(cli: Any, canary: str) -> None:
    _seed(canary)
    for fmt in ("json", "yaml", "env"):
        result = cli("export", "--format", fmt)
        assert result.code == 0 and canary not in result.out and "********" in result.out
    assert not AuditEvent.objects.filter(action="reveal").exists()
    only_jobs = json.loads(cli("export", "--category", "jobs").out)
    assert [e["key"] for e in only_jobs] == ["WORKERS"]


def test_export_reveal_without_the_right_is_refused(cli: Any, canary: str) -> None:
    _seed(canary)
    with override_settings(CONFIGSYNC_CLI_REVEAL=False):
        result = cli("export", "--reveal")
    assert result.code == 1 and "CONFIGSYNC_CLI_REVEAL" in result.err
    assert canary not in result.out + result.err
    assert not AuditEvent.objects.filter(action="reveal").exists()


def test_masked_values_are_never_imported(cli: Any, canary: str, tmp_path: Path) -> None:
    _seed(canary)
    path = tmp_path / "masked.json"
    path.write_text(cli("export").out, encoding="utf-8")
    SystemConfig.objects.all().delete()
    result = cli("import", str(path))
    assert result.code == 1 and "API_TOKEN" in result.err and "masked" in result.err
    assert not SystemConfig.objects.filter(key="API_TOKEN").exists()
    assert SystemConfig.objects.get(key="WORKERS").typed_value() == 4


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("bad.env", "A=1\nB=2\nnot an assignment\nC=3\n", 3),
        ("bad.json", '[\n  {"key": "A", "value": "1"},\n  {"key": "B", "value": }\n]\n', 3),
        ("bad.yaml", "- key: A\n  value: '1'\n- key: B\n  value: [unclosed\n", 5),
        ("shape.json", '[\n {"key": "A", "value": "1"},\n {"key": "B", "valeu": "2"}\n]', 3),
        ("type.yaml", "- key: A\n  value: x\n- key: B\n  value: nope\n  value_type: int\n", 3),
    ],
)
def test_malformed_file_applies_nothing_and_names_the_line(
    cli: Any, tmp_path: Path, name: str, text: str, line: int
) -> None:
    system_config_set(key="A", value="old")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = cli("import", str(path))
    assert result.code == 1 and f"line {line}" in result.err, result.err
    assert "nothing was changed" in result.err
    assert SystemConfig.objects.get(key="A").raw_value() == "old"
    assert not SystemConfig.objects.filter(key="B").exists()


def test_dry_run_shows_changes_and_changes_nothing(cli: Any, tmp_path: Path) -> None:
    system_config_set(key="A", value="old")
    path = tmp_path / "new.env"
    path.write_text("A=new\nB=2\n", encoding="utf-8")
    result = cli("import", str(path), "--dry-run")
    assert result.code == 0, result.err
    assert "update  A" in result.out and "create  B" in result.out
    assert "would apply: 1 created, 1 updated" in result.out
    assert SystemConfig.objects.get(key="A").raw_value() == "old"
    assert not SystemConfig.objects.filter(key="B").exists()


def test_import_needs_a_format_it_can_tell(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "settings.txt"
    path.write_text("A=1\n", encoding="utf-8")
    assert cli("import", str(path)).code == 1
    assert cli("import", str(path), "--format", "env").code == 0
    assert SystemConfig.objects.get(key="A").raw_value() == "1"


CHILD = "import os,json;print(json.dumps(dict(os.environ)))"


def _listing(*folders: Path) -> dict[str, list[str]]:
    return {str(folder): sorted(os.listdir(folder)) for folder in folders}


def _run(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capfd.readouterr()
    try:
        call_command("configsync", "run", *args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def test_run_puts_settings_in_the_child_environment_and_writes_no_file(
    capfd: pytest.CaptureFixture[str], canary: str
) -> None:
    _seed(canary)
    folders = (Path.cwd(), app_settings.var_dir)
    before = _listing(*folders)
    code, out, err = _run(capfd, "--", sys.executable, "-c", CHILD)
    assert code == 0, err
    environment = json.loads(out.strip().splitlines()[-1])
    assert environment["WORKERS"] == "4"
    assert environment["SITE_NAME"] == TRICKY
    assert environment["FEATURES"] == SystemConfig.objects.get(key="FEATURES").raw_value()
    assert environment["API_TOKEN"] == canary
    assert environment["PATH"] == os.environ["PATH"]  # the inherited environment stays
    assert _listing(*folders) == before
    assert AuditEvent.objects.filter(action="reveal", natural_key="API_TOKEN").count() == 1


def test_run_category_and_child_exit_status(capfd: pytest.CaptureFixture[str], canary: str) -> None:
    _seed(canary)
    code, out, _ = _run(capfd, "--category", "jobs", "--", sys.executable, "-c", CHILD)
    environment = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and environment["WORKERS"] == "4" and "SITE_NAME" not in environment
    code, _, _ = _run(capfd, "--", sys.executable, "-c", "raise SystemExit(7)")
    assert code == 7


def test_run_without_the_right_refuses_secrets_or_leaves_them_out(
    capfd: pytest.CaptureFixture[str], canary: str
) -> None:
    _seed(canary)
    with override_settings(CONFIGSYNC_CLI_REVEAL=False):
        code, out, err = _run(capfd, "--", sys.executable, "-c", CHILD)
        assert code == 1 and "--no-secrets" in err and canary not in out + err
        code, out, _ = _run(capfd, "--no-secrets", "--", sys.executable, "-c", CHILD)
    environment = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and "API_TOKEN" not in environment and environment["WORKERS"] == "4"
    assert not AuditEvent.objects.filter(action="reveal").exists()


def test_run_without_a_command_is_a_usage_error(capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capfd)
    assert code == 2 and "usage" in err
    code, _, _ = _run(capfd, "--")
    assert code == 2


def test_yaml_export_is_plain_yaml(cli: Any) -> None:
    system_config_set(key="FLAG", value="no")
    loaded = yaml.safe_load(cli("export", "--format", "yaml").out)
    assert loaded[0]["value"] == "no"  # quoted: not read back as False


def test_get_reveal_obeys_the_same_right_as_export(cli: Any, settings: Any, canary: str) -> None:
    cli("set", "API_TOKEN", canary, "--sensitive")
    settings.CONFIGSYNC_CLI_REVEAL = False
    refused = cli("get", "API_TOKEN", "--reveal")
    assert refused.code == 1 and "CONFIGSYNC_CLI_REVEAL" in refused.err
    assert canary not in refused.out + refused.err
    settings.CONFIGSYNC_CLI_REVEAL = True
    assert cli("get", "API_TOKEN", "--reveal").out.strip().splitlines()[-1] == canary
