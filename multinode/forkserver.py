"""A node's ``manage.py`` without the start-up: Django set up once, one fork per command.

``python -m multinode.forkserver SOCKET`` runs in a node's environment and working directory
(the repository), sets Django up as ``manage.py`` would (``settings.local`` unless
``DJANGO_SETTINGS_MODULE`` says otherwise), imports the management commands the harness runs,
and then serves requests on the Unix socket ``SOCKET``, one at a time. A request is the JSON
list of ``manage.py`` arguments, sent with three open files (standard input, output and error):
the server forks; the child puts the files on its descriptors 0, 1 and 2 and runs
``manage.py``'s ``main()`` with those arguments, then ends as that process would: the exit
status of its ``SystemExit`` (a traceback on standard error and 1 for an uncaught exception),
non-daemon threads joined, ``atexit`` handlers run, database connections closed, output
flushed (see :func:`_end`). The server answers the child's pid, then its exit code (``-N`` when
signal ``N`` ended it).

The child is what a fresh ``python manage.py ARGS`` is after its imports: the server opens no
database, cache or broker connection and starts no thread before it forks (checked at start-up),
and ``random`` reseeds itself in every child. What changes is the cost: about a second of CPU
per command (interpreter start, Django and the project's imports, interpreter teardown) is paid
once per node instead; a command costs about 0.1 s.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import pkgutil
import socket
import struct
import sys
import threading
from pathlib import Path

PID = struct.Struct("!q")
"""The server's answers: the child's pid, then its exit code, each one signed 64-bit integer."""


def _preload() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.local")
    import django
    from django.apps import apps
    from django.core.management import get_commands, load_command_class
    from django.db import connections
    from django.urls import get_resolver

    django.setup()
    commands = get_commands()
    for name in ("configsync", "shell", "migrate", "createsuperuser"):
        # Building the parser imports what the command needs (``configsync`` imports the CLI
        # modules of every app).
        load_command_class(commands[name], name).create_parser("manage.py", name)
    for alias in connections:
        connections[alias]  # imports the backend; connects nothing
    # Every module of the project's apps (importing one wires nothing: configsync's rule, see
    # ``ConfigsyncConfig.ready``) and the URLconf, which commands may reach lazily.
    for config in apps.get_app_configs():
        path = Path(config.path)
        if path.is_relative_to(Path.cwd()) and not path.is_relative_to(sys.prefix):
            package = importlib.import_module(config.name)
            for info in pkgutil.walk_packages(package.__path__, prefix=f"{config.name}."):
                importlib.import_module(info.name)
    get_resolver().url_patterns  # noqa: B018
    import manage  # noqa: F401  (the repository's manage.py: the child runs its main())

    opened = [alias for alias in connections if connections[alias].connection is not None]
    if opened or threading.active_count() != 1:
        raise RuntimeError(f"forkserver: connections {opened} or threads open before fork")
    sys.stdout.flush()
    sys.stderr.flush()


def _child(listener: socket.socket, conn: socket.socket, argv: list[str], fds: list[int]) -> None:
    listener.close()
    conn.close()
    os.setsid()  # its own process group, which the harness may kill on a timeout
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    import manage

    sys.argv = ["manage.py", *argv]
    try:
        manage.main()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _end(code)


def _exit_code(exc: SystemExit) -> int:
    """The exit status the interpreter gives ``exc`` (a message goes to standard error)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _end(code: int) -> None:
    """End the child as the interpreter ends a process, without freeing every object (that
    teardown, which touches every page the child shares with the server, costs more than the
    command): wait for non-daemon threads, run the ``atexit`` handlers, close the database
    connections (the server sees a clean disconnection), flush the output, exit."""
    from django.db import connections

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    connections.close_all()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(path: str) -> None:
    """Serve requests on ``path`` until killed."""
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    print("forkserver ready", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
                argv = json.loads(data)
            except (OSError, ValueError):
                continue
            if len(fds) != 3 or not isinstance(argv, list):
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                _child(listener, conn, [str(a) for a in argv], fds)  # never returns
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):  # a client gone does not stop the server
                conn.sendall(PID.pack(pid))
            _, status = os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                conn.sendall(PID.pack(os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    serve(sys.argv[1])
