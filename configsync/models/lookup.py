"""The version counter that invalidates in-process lookup caches when Redis is not configured."""

from __future__ import annotations

from django.db import models


class LookupVersion(models.Model):
    """A single row whose ``counter`` is bumped after every committed config change.

    Processes poll it (rate-limited) to learn that their cached lookups are stale; with Redis the
    counter lives in Redis instead (see ``configsync.lookup``).
    """

    counter = models.BigIntegerField(
        verbose_name="counter", default=0, help_text="Bumped after every committed change."
    )

    class Meta:
        verbose_name = "lookup version"
        verbose_name_plural = "lookup version"

    def __str__(self) -> str:
        return f"lookup version {self.counter}"
