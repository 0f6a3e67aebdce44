"""``providers`` depends on ``configsync``, never the reverse: no module of ``configsync/``
imports ``providers`` (at module level or inside a function), and the provider API, admin form
and serializers are registered by ``providers`` itself."""

from __future__ import annotations

import ast
from pathlib import Path

from django.urls import resolve

import configsync

CONFIGSYNC = Path(configsync.__file__).parent


def _imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_configsync_never_imports_providers() -> None:
    offenders = [
        f"{path.relative_to(CONFIGSYNC.parent)}:{line} imports {module}"
        for path in sorted(CONFIGSYNC.rglob("*.py"))
        if "migrations" not in path.parts
        for line, module in _imports_of(path)
        if module == "providers" or module.startswith("providers.")
    ]
    assert offenders == []


def test_provider_api_is_mounted_by_providers() -> None:
    match = resolve("/api/v1/configs/ai-providers/openai-main/test-connection/")
    assert match.func.__module__ == "providers.api"
    assert match.url_name == "ai-provider-test-connection"
