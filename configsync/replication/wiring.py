"""Imported once from ``configsync.signals``: connects the model receivers, registers checks."""

from configsync.replication import checks, receivers  # noqa: F401
