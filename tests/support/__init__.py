"""Helpers shared by the tests: plain functions, classes and constants, importable anywhere.

Fixtures stay in ``conftest.py`` files (the root one holds those several packages use); what a
fixture or a test needs to build lives here, one module per concern:

- :mod:`tests.support.api`: API clients per role (``ROLES``, ``key_client``, ``role_client``).
- :mod:`tests.support.cli`: ``CliResult``, what one ``manage.py configsync`` run printed.
- :mod:`tests.support.concurrency`: ``run_threads``.
- :mod:`tests.support.replication`: node names, the sync secret, stamps and remote changes.
- :mod:`tests.support.scripted_peer`: ``ScriptedPeer``, a ``Transport`` standing in for a node.
- :mod:`tests.support.providers`: a local stub of the AI providers' model-list endpoints.
- :mod:`tests.support.multinode`: ``run_cluster``, a cluster whose logs join a failing report.
- :mod:`tests.support.xdist`: one Redis DB and one var/ folder per pytest-xdist worker.
- :mod:`tests.support.production_server`: one node under gunicorn with settings.production
  (migrate, collectstatic, a real key), stopped bounded.
- :mod:`tests.support.kits`: what the transport contract suite needs of each transport; the kits
  are :mod:`tests.support.kit_database` and :mod:`tests.support.kit_bucket` (HTTP's is in
  ``tests/replication/transports/conftest.py``).

Factories stay in :mod:`tests.factories`; the multi-node harness is the ``multinode`` package at
the repository root (the benchmarks use it too).
"""
