"""The house's rules, proven on the code: the import graph of ``configsync/`` and ``providers/``
has no cycle and no arrow that points up.

The graph is read with the standard library's ``ast``, without importing anything: every
``import`` and ``from ... import`` of every module counts, at module level and inside functions
(a deferred import is still a dependency), including those under ``TYPE_CHECKING``. ``from a
import b`` is an arrow to the module ``a.b`` when it is one, else to ``a``. Migrations are left
out (frozen history). Importing a package's ``__init__`` is an arrow to the package itself, so
``configsync.models`` — the app's model registry, which re-exports every model — is one module.

Each rule below names the importers it constrains and the modules they must never import, as
``fnmatch`` patterns over dotted module names (``*`` matches dots too).
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("configsync", "providers")
PROJECT = ("settings", "settings.*")


def layer(*names: str) -> tuple[str, ...]:
    """Every module of these layers, in the core and in every subsystem (``*.services.*``)."""
    return tuple(pattern for name in names for pattern in (f"*.{name}", f"*.{name}.*"))


def package(*names: str) -> tuple[str, ...]:
    """These modules or packages and everything below them."""
    return tuple(pattern for name in names for pattern in (name, f"{name}.*"))


FOUNDATION = (
    "configsync.conf",
    "configsync.exceptions",
    "configsync.logging",
    "configsync.locks",
    "configsync.value_types",
    "configsync.validation",
    "configsync.signals",
    "configsync.versioning",
    "configsync.crypto.keyring",
    "configsync.crypto.fields",
    "configsync.crypto.errors",
)
"""What everything stands on: settings access, errors, signals, locks, values, the keyring."""

CORE_LOWER = (
    *FOUNDATION,
    "configsync.models.*",  # not the ``configsync.models`` registry, which lists every model
    *package("configsync.selectors"),
    "configsync.lookup",
)
"""The core's layers below the subsystems: its foundation, its models, its reads, its caches."""


@dataclass(frozen=True)
class Rule:
    """``importers`` never import ``forbidden`` (``exempt`` importers are not constrained)."""

    rule: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = field(default=())


RULES: tuple[Rule, ...] = (
    Rule(
        "providers may import configsync, never the reverse",
        importers=package("configsync"),
        forbidden=package("providers"),
    ),
    Rule(
        "nothing in configsync or providers imports the project (settings)",
        importers=package(*PACKAGES),
        forbidden=PROJECT,
    ),
    Rule(
        "selectors never import services, tasks, api, cli or admin",
        importers=layer("selectors"),
        forbidden=layer("services", "tasks", "api", "cli", "admin"),
    ),
    Rule(
        "services never import tasks, api, cli, admin or forms",
        importers=layer("services"),
        forbidden=layer("tasks", "api", "cli", "admin", "forms"),
    ),
    Rule(
        "models import no services, selectors or api",
        importers=layer("models"),
        forbidden=layer("services", "selectors", "api"),
    ),
    Rule(
        "transports never import api",
        importers=layer("transports"),
        forbidden=layer("api"),
    ),
    Rule(
        "replication is not imported by the layers below it (the core's foundation, models, "
        "selectors and caches)",
        importers=CORE_LOWER,
        forbidden=package("configsync.replication"),
    ),
    Rule(
        "the .env bridge is imported by no other subsystem and by no lower layer "
        "(only the entry points: tasks, apps, the model registry)",
        importers=(
            *CORE_LOWER,
            *package("configsync.replication", "configsync.crypto", "providers"),
        ),
        forbidden=package("configsync.envbridge"),
    ),
    Rule(
        "snapshots are imported by nothing but the entry points (tasks, apps)",
        importers=package(*PACKAGES),
        forbidden=package("configsync.snapshots"),
        exempt=(*package("configsync.snapshots"), "configsync.tasks", "configsync.apps"),
    ),
    Rule(
        "crypto's primitives (keyring, fields, errors) import nothing above the foundation",
        importers=(
            "configsync.crypto.keyring",
            "configsync.crypto.fields",
            "configsync.crypto.errors",
        ),
        forbidden=(
            *package("configsync.models", "configsync.selectors", "configsync.services"),
            *package("configsync.replication", "configsync.envbridge", "providers"),
            "configsync.crypto.rotation",
            "configsync.crypto.cli",
        ),
    ),
    Rule(
        "crypto's key rotation is not imported by the layers below it or by other subsystems",
        importers=(*CORE_LOWER, *package("configsync.replication", "configsync.envbridge")),
        forbidden=("configsync.crypto.rotation", "configsync.crypto.cli"),
    ),
)


# --- the graph ---------------------------------------------------------------------------------
def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module of ``PACKAGES`` but migrations."""
    found: dict[str, tuple[Path, bool]] = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if "migrations" in parts:
                continue
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


def _imported(name: str, is_package: bool, tree: ast.AST, known: Iterable[str]) -> set[str]:
    """The dotted names ``tree`` imports, at any depth (functions and ``TYPE_CHECKING`` too)."""
    known = set(known)
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                targets.add(candidate if candidate in known else module)
    return targets


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``PACKAGES`` and of the project (``settings``) it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {
            target
            for target in _imported(name, is_package, tree, modules)
            if target.split(".")[0] in (*PACKAGES, "settings") and target != name
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in graph:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def violations(rule: Rule, graph: dict[str, set[str]]) -> list[str]:
    """Every arrow of ``graph`` that breaks ``rule``, as ``importer -> imported``."""
    return [
        f"{importer} -> {target}"
        for importer in sorted(graph)
        if _matches(importer, rule.importers) and not _matches(importer, rule.exempt)
        for target in sorted(graph[importer])
        if _matches(target, rule.forbidden)
    ]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


# --- the proof ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rule", [pytest.param(r, id=f"rule{n:02d}") for n, r in enumerate(RULES, 1)]
)
def test_no_import_breaks_a_layer_rule(rule: Rule, graph: dict[str, set[str]]) -> None:
    found = violations(rule, graph)
    assert not found, f"{rule.rule}:\n  " + "\n  ".join(found)


def test_the_import_graph_has_no_cycle(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    assert not found, "import cycles:\n  " + "\n  ".join(" <-> ".join(c) for c in found)


# --- the checker checks what it says -------------------------------------------------------------
def test_the_graph_counts_function_level_and_relative_imports() -> None:
    source = (
        "from . import sibling\n"
        "from ..models import Thing\n"
        "import configsync.conf\n"
        "def later():\n"
        "    from configsync.tasks import push\n"
    )
    known = {"pkg.sub.sibling", "pkg.models", "configsync.conf", "configsync.tasks"}
    found = _imported("pkg.sub.mod", False, ast.parse(source), known)
    assert found == {"pkg.sub.sibling", "pkg.models", "configsync.conf", "configsync.tasks"}


def test_cycles_are_found_and_rules_match_layers() -> None:
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert cycles(graph) == [["a.x", "a.y", "a.z"]]
    rule = Rule("selectors never import services", layer("selectors"), layer("services"))
    graph = {
        "configsync.replication.selectors.feed": {"configsync.services.node"},
        "configsync.selectors": {"configsync.replication.services.apply"},
        "configsync.models.api_key": {"configsync.services.audit"},
    }
    assert violations(rule, graph) == [
        "configsync.replication.selectors.feed -> configsync.services.node",
        "configsync.selectors -> configsync.replication.services.apply",
    ]


def test_the_graph_covers_both_packages(graph: dict[str, set[str]]) -> None:
    assert "configsync.signals" in graph and "providers.apps" in graph
    assert not any(".migrations" in name for name in graph)
    assert "configsync.replication.receivers" in graph["configsync.apps"]
