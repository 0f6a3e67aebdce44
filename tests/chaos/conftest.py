"""The chaos harness's clusters are multi-node clusters: the same report hook (node logs in a
failing test's report) and the same check of this xdist worker's Redis DBs."""

from tests.multinode.conftest import _enough_redis_dbs, pytest_runtest_makereport

__all__ = ["_enough_redis_dbs", "pytest_runtest_makereport"]
