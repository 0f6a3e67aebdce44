"""Fixtures of the snapshot tests: the session's S3-compatible server (moto, credentials on)."""

from tests.support.kit_bucket import bucket_server  # noqa: F401 - fixture
