"""The harness's own promise: a command run on a node (``Node.manage``) behaves as
``python manage.py ARGS`` in a new process does, whether forked from the node's fork server
(``multinode/forkserver.py``) or started afresh (``MULTINODE_FORKSERVER=0``). The node is built,
never started: commands need neither its web server nor its worker."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

import multinode.cluster
from multinode import Cluster, Node

pytestmark = pytest.mark.multinode


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    cluster = Cluster(tmp_path_factory.mktemp("harness"), names=["a"], links=[])
    try:
        yield cluster["a"]
    finally:
        cluster.destroy()


@pytest.fixture(params=[True, False], ids=["forked", "new-process"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(multinode.cluster, "FORKSERVER", request.param)
    return bool(request.param)


def shell(
    node: Node, code: str, *, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return node.manage("shell", "-c", code, stdin=stdin, timeout=timeout)


def test_input_output_errors_and_exit_status(node: Node, way: bool) -> None:
    code = (
        "import sys\n"
        "print(sys.stdin.read().upper(), end='')\n"
        "print('to standard error', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    result = shell(node, code, stdin="first line\nsecond line\n")
    assert result.returncode == 3
    assert result.stdout.splitlines()[-2:] == ["FIRST LINE", "SECOND LINE"]
    assert result.stderr == "to standard error\n"
    assert shell(node, "import sys; sys.exit('a reason')").stderr == "a reason\n"
    raised = shell(node, "raise LookupError('not here')")
    assert raised.returncode == 1
    assert raised.stderr.splitlines()[-1] == "LookupError: not here"
    assert shell(node, "import sys; print(repr(sys.stdin.read()))").stdout.endswith("''\n")


def test_it_ends_as_a_process_ends(node: Node, way: bool) -> None:
    """Non-daemon threads finish and ``atexit`` handlers run, in that order, before it exits."""
    code = (
        "import atexit, threading, time\n"
        "atexit.register(print, 'atexit ran')\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
    )
    assert shell(node, code).stdout.splitlines()[-2:] == ["thread done", "atexit ran"]


def test_a_command_past_its_timeout_is_killed(node: Node, way: bool) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        shell(node, "import time; time.sleep(60)", timeout=3)
    assert shell(node, "print('next')").stdout.splitlines()[-1] == "next"


def test_a_changed_environment_reaches_the_next_command(node: Node, way: bool) -> None:
    read = "import os; print(os.environ.get('HARNESS_PROBE', '-'))"
    before = shell(node, read).stdout.splitlines()[-1]
    node.env["HARNESS_PROBE"] = "changed"
    try:
        assert shell(node, read).stdout.splitlines()[-1] == "changed"
    finally:
        del node.env["HARNESS_PROBE"]
    assert before == "-"
