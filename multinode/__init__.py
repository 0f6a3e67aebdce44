"""The multi-node harness: real configsync nodes as separate processes (see :mod:`.cluster`).

A support package of the repository, used by the multi-node tests (``tests/multinode``) and the
benchmarks (``bench/``); it depends on neither, and it is not part of the application (it is not
packaged, and nothing under ``configsync/`` or ``providers/`` imports it). It starts each node as
the README does (``manage.py`` and ``celery`` in subprocesses), so it imports no project code.
"""

from multinode.cluster import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    PYTHON,
    REPO,
    Cluster,
    Node,
    free_port,
    pg_admin,
    pg_drop,
    pg_recreate,
    unique_key,
    wait_until,
)

__all__ = [
    "ADMIN_PASSWORD",
    "ADMIN_USER",
    "PYTHON",
    "REPO",
    "Cluster",
    "Node",
    "free_port",
    "pg_admin",
    "pg_drop",
    "pg_recreate",
    "unique_key",
    "wait_until",
]
