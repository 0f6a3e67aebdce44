"""The README's table of environment variables is the list of variables the code reads.

Read: the first argument of every ``env.<reader>("NAME")`` call of the settings (and of loops over
literal names feeding one), and every ``os.environ``/``os.getenv`` read in the settings,
``gunicorn.conf.py``, the app packages and the multi-node harness. Documented: the names in the
first column of the table under "## Environment variables".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"[A-Z][A-Z0-9_]{2,}")
DOCUMENTED_NOT_READ = {
    "DJANGO_SETTINGS_MODULE": "read by Django itself (manage.py, wsgi, celery set its default)",
    "PORT": "read by the Makefile (make run) and gunicorn.conf.py's bind default",
    "TEST_REDIS_DBS": "read by tests/support/xdist.py (tests only)",
    "CHAOS_SEED": "read by tests/chaos/ (harness.py, test_state_machine.py; tests only)",
    "CHAOS_ROUNDS": "read by tests/chaos/harness.py (tests only; make chaos)",
    "CHAOS_NODES": "read by tests/chaos/harness.py and tests/support/xdist.py (tests only)",
    "SCHEMATHESIS_MAX_EXAMPLES": "read by tests/api/test_schema_fuzz.py (tests only)",
    "CHAOS_EXAMPLES": "read by tests/chaos/test_state_machine.py (tests only)",
    "CHAOS_NETNS": "read by tests/chaos/harness.py (tests only)",
}


def _sources() -> list[Path]:
    return [
        *ROOT.glob("settings/*.py"),
        ROOT / "gunicorn.conf.py",
        *ROOT.glob("configsync/**/*.py"),
        *ROOT.glob("providers/**/*.py"),
        *ROOT.glob("multinode/*.py"),
    ]


def _literal_names(node: ast.AST) -> set[str]:
    return {
        n.value
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and NAME.fullmatch(n.value)
    }


def variables_read() -> set[str]:
    found: set[str] = set()
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                first = node.args[0] if node.args else None
                is_env = re.fullmatch(r"env\.\w+", func) and path.parent.name == "settings"
                is_os = func in ("os.environ.get", "os.getenv", "os.environ.setdefault")
                value = first.value if isinstance(first, ast.Constant) else None
                if (is_env or is_os) and isinstance(value, str) and NAME.fullmatch(value):
                    found.add(value)
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                found |= _literal_names(node.slice)
            elif isinstance(node, ast.For) and path.parent.name == "settings":
                body = "\n".join(ast.unparse(b) for b in node.body)
                if re.search(r"env\.\w+\(", body):
                    found |= _literal_names(node.iter)
    return found


def variables_documented() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", first_cell))
    return names


def test_every_variable_the_code_reads_is_in_the_readme_table() -> None:
    read = variables_read()
    assert {"DATABASE_URL", "CONFIGSYNC_VAR_DIR", "CELERY_BROKER_URL"} <= read  # the scan works
    missing = sorted(read - variables_documented())
    assert not missing, f"read by the code, missing from the README's table: {missing}"


def test_the_readme_table_names_no_variable_the_code_does_not_read() -> None:
    extra = sorted(variables_documented() - variables_read() - set(DOCUMENTED_NOT_READ))
    assert not extra, f"in the README's table, read by nothing: {extra}"
