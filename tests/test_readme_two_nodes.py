"""The README's second node on one host (the whole path, step 4), its set-up lines run as written.

Every command run for a node (``configsync``, ``manage.py``) starts in a terminal of its own, not
in the shell that started the node: what it reads must come from the node's own file, not from
shell variables of another terminal. Node b's commands then use node b's folder, and both nodes
encrypt with one key; a ``configsync`` command given node b's folder but not node a's key would
have generated a key of its own there (the step once read ``KEY=$(cat ...)`` in one terminal and
used ``$KEY`` in another).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The README's commands on node folders of their own: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[1]


def step_four() -> list[str]:
    """The shell lines of step 4's code block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    start = text.index("4. **A second node on the same host**")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def shell(project: Path, script: str) -> str:
    """``script`` in a new shell (a new terminal) in ``project``; its standard output."""
    result = subprocess.run(
        ["sh", "-c", script],
        cwd=project,
        env={"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_each_nodes_commands_get_its_folder_and_the_shared_key(tmp_path: Path) -> None:
    project = tmp_path / "clone"
    project.mkdir()
    shutil.copy(ROOT / "manage.py", project / "manage.py")
    # settings/ is copied (its BASE_DIR, which a relative CONFIGSYNC_VAR_DIR starts from, is
    # where its files are); the apps are linked.
    shutil.copytree(
        ROOT / "settings", project / "settings", ignore=shutil.ignore_patterns("__pycache__")
    )
    for package in ("configsync", "providers"):
        os.symlink(ROOT / package, project / package)
    (project / "var").mkdir()
    (project / "var" / "dev-encryption.key").write_text("node-a-development-key\n")  # step 1's

    lines = step_four()
    runs = [line for line in lines if "make run" in line]
    assert len(runs) == 2, lines
    setup = [line for line in lines if line.startswith(("mkdir", "SECRET=", "echo", "cp"))]
    shell(project, "set -e\n" + "\n".join(setup))

    # Each node's `make run` line, and each command line for a node, sources one file.
    matches = [re.match(r"\. (\S+) && ", line) for line in runs]
    assert all(matches), f"each node's make run sources the node's file: {runs}"
    sources = {match.group(1) for match in matches if match}
    assert len(sources) == 2
    probe = (
        "from django.conf import settings; from configsync.conf import app_settings; "
        "from pathlib import Path; "
        "print(settings.VAR_DIR, Path(app_settings.DEV_KEY_FILE).read_text().strip(), "
        "settings.CONFIGSYNC_SYNC_SECRET, app_settings.NODE_ID, "
        "settings.DATABASES['default']['NAME'])"
    )
    seen = {}
    for source in sorted(sources):
        out = shell(
            project,
            f". {source} && DJANGO_SETTINGS_MODULE=settings.local python -c "
            f'"import django; django.setup(); {probe}"',
        )
        var_dir, key, secret, node, database = out.split()
        seen[source] = (Path(var_dir), key, secret, node, database)
    (a_dir, a_key, a_secret, a_node, a_db), (b_dir, b_key, b_secret, b_node, b_db) = (
        seen[s] for s in sorted(sources)
    )
    assert a_dir != b_dir and a_db != b_db and a_node != b_node
    assert a_key == b_key == "node-a-development-key"
    assert a_secret == b_secret and len(a_secret) >= 32

    # The lines that read the setting on node b run in a terminal of their own, with its file.
    commands = [line for line in lines if "configsync " in line and "make run" not in line]
    assert commands and all(re.match(r"\(\. \S+node\.env && ", line) for line in commands)
