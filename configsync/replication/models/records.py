from django.db import models


class NodeClock(models.Model):
    """This node's hybrid logical clock and change-feed sequence (a single row).

    Every local write and every applied remote change takes this row ``select_for_update`` to
    issue the next HLC timestamp and sequence number, and holds the lock until its transaction
    commits. Sequence numbers therefore become visible in commit order: a reader that has seen
    ``seq = n`` can never later find a newly committed change with ``seq < n``.
    """

    ROW_ID = 1
    """The primary key of the single row (``configsync.replication.services.clock``)."""

    last_wall_ms = models.BigIntegerField(
        verbose_name="last physical time (ms)",
        default=0,
        help_text="Physical part of the last HLC issued.",
    )
    last_logical = models.IntegerField(
        verbose_name="last logical counter",
        default=0,
        help_text="Logical part of the last HLC issued.",
    )
    last_seq = models.BigIntegerField(
        verbose_name="last sequence",
        default=0,
        help_text="Last change-feed sequence number issued.",
    )
    epoch = models.CharField(
        verbose_name="feed epoch",
        max_length=32,
        blank=True,
        default="",
        help_text="Random id of this database's feed; a cursor from another epoch starts over.",
    )

    class Meta:
        verbose_name = "node clock"
        verbose_name_plural = "node clock"

    def __str__(self) -> str:
        return f"clock seq={self.last_seq}"


class ReplicatedRecord(models.Model):
    """Replication metadata of one record of a replicated model, tombstones included.

    Kept beside the model (not in it) so that any model, ``auth.User`` included, can replicate.
    ``seq`` is the record's position in this node's change feed: re-issued on every change, so the
    feed serves each record's latest version once and costs O(changes since cursor).
    """

    model_label = models.CharField(
        verbose_name="model", max_length=100, help_text="Replicated model, app_label.modelname."
    )
    natural_key = models.CharField(
        verbose_name="natural key", max_length=255, help_text="The record's identity on every node."
    )
    hlc = models.CharField(
        verbose_name="HLC timestamp",
        max_length=120,
        help_text="Hybrid logical clock of the current version: wall ms, counter, node id.",
    )
    origin_node = models.CharField(
        verbose_name="origin node", max_length=64, help_text="Node that made the current version."
    )
    version_vector = models.JSONField(
        verbose_name="version vector",
        default=dict,
        help_text="Per node, the HLC of the latest of its writes this version includes.",
    )
    deleted = models.BooleanField(
        verbose_name="deleted (tombstone)", default=False, help_text="The record was deleted."
    )
    data = models.JSONField(
        verbose_name="wire form",
        null=True,
        blank=True,
        help_text="The version's wire form (ciphertext for secrets); null for a tombstone.",
    )
    seq = models.BigIntegerField(
        verbose_name="sequence", unique=True, help_text="Position in this node's change feed."
    )
    received_from = models.CharField(
        verbose_name="received from",
        max_length=64,
        blank=True,
        default="",
        help_text="Node id of the peer that delivered this version; empty for a local write.",
    )
    unreadable = models.BooleanField(
        verbose_name="unreadable here",
        default=False,
        db_index=True,
        help_text="Holds ciphertext of a key this node's keyring lacked when it arrived.",
    )
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    class Meta:
        verbose_name = "replicated record"
        verbose_name_plural = "replicated records"
        constraints = [
            models.UniqueConstraint(
                fields=["model_label", "natural_key"], name="configsync_replicated_record_key"
            )
        ]
        indexes = [
            # The beat's tombstone pass (``tombstones_collect``) reads only tombstones older than
            # a bound: a partial index keeps it flat however many live records there are.
            models.Index(
                fields=["updated_at"],
                condition=models.Q(deleted=True),
                name="configsync_rr_tombstone_age",
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_label}:{self.natural_key}@{self.hlc}"
