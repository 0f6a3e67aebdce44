from django.db import models


class RecordVersion(models.Model):
    """One kept version of a replicated record: the history that rollback restores from.

    Written by ``configsync.replication.services.history`` in the transaction of every change of
    the record on this node (a local write, a change applied from a peer, a restore, a rollback,
    a conflict's resolution); the newest ``CONFIGSYNC_HISTORY_VERSIONS`` per record are kept.
    ``data`` is the wire form, so a sensitive value stays ciphertext (bound to the record, which
    is why a rollback can write it back and key rotation re-encrypts it). ``number`` counts the
    record's versions on this node from 1; it is what ``configsync rollback KEY VERSION`` names.
    """

    model_label = models.CharField(
        verbose_name="model", max_length=100, help_text="Replicated model, app_label.modelname."
    )
    natural_key = models.CharField(
        verbose_name="natural key", max_length=255, help_text="The record's identity on every node."
    )
    number = models.PositiveIntegerField(
        verbose_name="version", help_text="The record's version number on this node, from 1."
    )
    hlc = models.CharField(
        verbose_name="HLC timestamp",
        max_length=120,
        help_text="Hybrid logical clock of the version.",
    )
    origin_node = models.CharField(
        verbose_name="origin node", max_length=64, help_text="Node that made the version."
    )
    deleted = models.BooleanField(
        verbose_name="deleted (tombstone)", default=False, help_text="The version is a delete."
    )
    data = models.JSONField(
        verbose_name="wire form",
        null=True,
        blank=True,
        help_text="The version's wire form (ciphertext for secrets); null for a delete.",
    )
    actor = models.CharField(
        verbose_name="actor", max_length=200, help_text="Who made the change (see AuditEvent)."
    )
    via = models.CharField(
        verbose_name="via", max_length=16, help_text="The entry point of the change."
    )
    recorded_at = models.DateTimeField(
        verbose_name="recorded at", auto_now_add=True, help_text="When this node stored it."
    )

    class Meta:
        verbose_name = "record version"
        verbose_name_plural = "record versions"
        ordering = ["model_label", "natural_key", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_label", "natural_key", "number"],
                name="configsync_record_version_number",
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_label}:{self.natural_key} v{self.number}"
