"""What every atheris harness under ``fuzz/`` shares: a throwaway Django node and the run loop.

A harness is ``python fuzz/<parser>.py [libFuzzer options] [corpus dirs]``, e.g.
``python fuzz/envfile.py -atheris_runs=2000`` or ``-max_total_time=60`` (``make fuzz``). It
runs as node ``node-local`` of a group signing with a fixed fake secret, with ``settings.test``
(its fixed fake keys), an SQLite database and a var folder of its own in a temporary folder
(removed at exit), and no Redis: it never touches the test suite's databases. Without a corpus
directory it fuzzes a temporary copy of ``fuzz/corpus/<parser>/`` (the committed seeds, valid
inputs, are never rewritten by libFuzzer). A crash leaves its input as ``crash-<sha1>`` in the
current folder (``-artifact_prefix=`` moves it); re-run the harness with that file to see it.

The harness's ``one_input(data)`` calls the parser with the bytes and lets anything but the
parser's documented errors escape: atheris reports it as a crash with the input and exits 1.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
NODE = "node-local"
PEER = "node-remote"
SECRET = "fuzz-sync-secret-not-real"
MAX_LEN = 16384
"""The largest input a harness is given (libFuzzer's ``-max_len``): bounded inputs, no hang."""


def setup(*, database: bool = False) -> None:
    """Configure and start Django for a harness (``database``: migrate a fresh SQLite file).

    Call it inside ``atheris.instrument_imports()`` so the project's modules it loads are
    instrumented for coverage."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    folder = tempfile.mkdtemp(prefix="configsync-fuzz-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name in ("REDIS_URL", "DATABASE_URL", "EXTERNAL_DATABASE_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "settings.test",
            "TEST_DATABASE_URL": f"sqlite:///{folder}/node.sqlite3",
            "CONFIGSYNC_VAR_DIR": folder,
            "CONFIGSYNC_NODE_ID": NODE,
            "CONFIGSYNC_SYNC_SECRET": SECRET,
            "CONFIGSYNC_PEERS": "",
            "DJANGO_ALLOWED_HOSTS": "testserver",
        }
    )
    import django

    django.setup()
    if database:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def run(name: str, one_input: Callable[[bytes], None]) -> None:
    """Fuzz ``one_input`` with ``sys.argv``'s options; the seeds of ``fuzz/corpus/<name>/``
    (copied: libFuzzer adds what it finds to its first corpus folder) when no folder is given."""
    import atheris

    args = list(sys.argv)
    if not any(not arg.startswith("-") for arg in args[1:]):
        scratch = tempfile.mkdtemp(prefix=f"configsync-fuzz-{name}-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        seeds = CORPUS / name
        if seeds.is_dir():
            shutil.copytree(seeds, scratch, dirs_exist_ok=True)
        args.append(scratch)
    if not any(arg.startswith("-max_len=") for arg in args):
        args.append(f"-max_len={MAX_LEN}")
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def json_of(data: bytes) -> object:
    """``data`` as JSON when it is JSON (NaN and deep nesting included), else ``None``."""
    import json

    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
