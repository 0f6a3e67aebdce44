from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models


@dataclass(frozen=True)
class KeptVersion:
    """One of a conflict's two versions, typed: ``Conflict.local`` and ``Conflict.remote``.

    ``hlc`` stays text: a version from the ``.env`` file carries no peer timestamp. ``data`` is
    the wire form (ciphertext for secrets): show ``summary()`` or ``describe()``, never ``data``.
    """

    hlc: str
    origin: str
    deleted: bool
    data: dict[str, Any] | None

    @classmethod
    def from_stored(cls, raw: dict[str, Any] | None) -> KeptVersion:
        raw = raw if isinstance(raw, dict) else {}  # a malformed stored version: nothing known
        data = raw.get("data")
        return cls(
            hlc=str(raw.get("hlc", "")),
            origin=str(raw.get("origin", "")),
            deleted=bool(raw.get("deleted")),
            data=data if isinstance(data, dict) else None,
        )

    def summary(self) -> dict[str, Any]:
        """``{"hlc", "origin", "deleted"}``: what the API and the CLI show (never a value)."""
        return {"hlc": self.hlc, "origin": self.origin, "deleted": self.deleted}

    def describe(self) -> str:
        """One line for people (the admin): ``<hlc> from <origin> (present|deleted)``."""
        return f"{self.hlc} from {self.origin} ({'deleted' if self.deleted else 'present'})"


class Conflict(models.Model):
    """A losing version kept for review after two concurrent changes of one record.

    Both versions are kept in their wire form (``configsync.replication.registry``), so sensitive
    values stay ciphertext. ``local_version`` is what this node had, ``remote_version`` what
    arrived (from a peer, or from the ``.env`` file); each is
    ``{"hlc": str, "origin": str, "deleted": bool, "data": dict | None}``. The winner by
    last-write-wins is already applied; resolving writes the chosen version as a new change.
    """

    class Winner(models.TextChoices):
        LOCAL = "local", "Local"
        REMOTE = "remote", "Remote"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    model_label = models.CharField(
        verbose_name="model", max_length=100, help_text="Replicated model, app_label.modelname."
    )
    natural_key = models.CharField(
        verbose_name="natural key", max_length=255, help_text="The record's identity on every node."
    )
    source = models.CharField(
        verbose_name="source",
        max_length=255,
        help_text="Where the remote version came from: a peer's name, or env-file:<path>.",
    )
    local_version = models.JSONField(
        verbose_name="local version",
        help_text="This node's version (wire form; secrets encrypted).",
    )
    remote_version = models.JSONField(
        verbose_name="remote version",
        help_text="The incoming version (wire form; secrets encrypted).",
    )
    winner = models.CharField(
        verbose_name="winner",
        max_length=8,
        choices=Winner.choices,
        help_text="Which version last-write-wins applied.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=10,
        choices=Status.choices,
        default=Status.OPEN,
        db_index=True,
        help_text="Open until an operator resolves it.",
    )
    resolution = models.CharField(
        verbose_name="resolution",
        max_length=8,
        choices=Winner.choices,
        blank=True,
        default="",
        help_text="The version an operator chose.",
    )
    resolved_hlc = models.CharField(
        verbose_name="resolution timestamp",
        max_length=120,
        blank=True,
        default="",
        help_text="HLC of the change that resolved it (here or on the node that resolved it).",
    )
    skew_affected = models.BooleanField(
        verbose_name="clock skew may have decided it",
        default=False,
        help_text=(
            "The source's measured clock skew was above the warning threshold and at least the "
            "gap between the two versions' times: the other side may really be the later write."
        ),
    )
    detected_at = models.DateTimeField(verbose_name="detected at", auto_now_add=True)
    resolved_at = models.DateTimeField(verbose_name="resolved at", null=True, blank=True)

    class Meta:
        verbose_name = "conflict"
        verbose_name_plural = "conflicts"
        ordering = ["-detected_at", "-id"]
        indexes = [models.Index(fields=["model_label", "natural_key"])]

    def __str__(self) -> str:
        return f"{self.model_label}:{self.natural_key} ({self.status})"

    @property
    def local(self) -> KeptVersion:
        """``local_version``, typed."""
        return KeptVersion.from_stored(self.local_version)

    @property
    def remote(self) -> KeptVersion:
        """``remote_version``, typed."""
        return KeptVersion.from_stored(self.remote_version)

    def changed_fields(self) -> list[str]:
        """Names of the fields whose wire values differ between the two versions (never values)."""
        local = self.local.data or {}
        remote = self.remote.data or {}
        return sorted(
            name for name in set(local) | set(remote) if local.get(name) != remote.get(name)
        )
