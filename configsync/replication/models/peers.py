from django.db import models


class Peer(models.Model):
    """Another node of this replication group, or a shared medium, synced full-duplex.

    ``transport`` says how it is reached: ``http`` (another configsync node at ``base_url``,
    seeded from ``CONFIGSYNC_PEERS``), ``database`` (the shared external database of
    ``EXTERNAL_DATABASE_URL``), ``bucket`` (the S3-compatible bucket of ``CONFIGSYNC_R2_*``) or
    ``nats`` (the JetStream stream of ``CONFIGSYNC_NATS_URL``). The media are seeded from their
    settings under the reserved names ``external-db``, ``r2`` and ``nats``; the deployment mode
    decides which transports a cycle uses.
    """

    class TransportKind(models.TextChoices):
        HTTP = "http", "HTTP peer (another configsync node)"
        DATABASE = "database", "External database (EXTERNAL_DATABASE_URL)"
        BUCKET = "bucket", "Object storage (CONFIGSYNC_R2_*)"
        NATS = "nats", "NATS JetStream (CONFIGSYNC_NATS_URL)"

    name = models.SlugField(
        verbose_name="name",
        max_length=64,
        unique=True,
        help_text="Local name of the peer, e.g. cloud.",
    )
    transport = models.CharField(
        verbose_name="transport",
        max_length=16,
        choices=TransportKind.choices,
        default=TransportKind.HTTP,
        help_text="How the peer is reached: another node over HTTP, the external database, or "
        "the bucket.",
    )
    base_url = models.URLField(
        verbose_name="base URL",
        max_length=500,
        blank=True,
        default="",
        help_text="The peer's root URL, e.g. https://cfg.example.com (HTTP peers only).",
    )
    enabled = models.BooleanField(
        verbose_name="enabled", default=True, help_text="Disabled peers are not synced."
    )
    seeded = models.BooleanField(
        verbose_name="from CONFIGSYNC_PEERS",
        default=False,
        help_text="Named by CONFIGSYNC_PEERS; disabled when the setting no longer names it.",
    )
    node_id = models.CharField(
        verbose_name="node id",
        max_length=64,
        blank=True,
        default="",
        help_text="The peer's own node id, learned on first contact.",
    )
    created_at = models.DateTimeField(verbose_name="created at", auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    class Meta:
        verbose_name = "peer"
        verbose_name_plural = "peers"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    MEDIA_NAMES = {"database": "external-db", "bucket": "r2", "nats": "nats"}
    """The one peer each shared medium is (seeded from its settings under this name)."""

    def clean(self) -> None:
        """An HTTP peer needs its base URL; a medium is one peer under its reserved name (its
        settings configure it: a second one would share this node's log entries there)."""
        from django.core.exceptions import ValidationError

        if self.transport == self.TransportKind.HTTP:
            if not self.base_url:
                raise ValidationError({"base_url": "An HTTP peer needs its base URL."})
            if self.name in self.MEDIA_NAMES.values():
                raise ValidationError({"name": "This name is reserved for a shared medium."})
        elif self.name != (reserved := self.MEDIA_NAMES.get(self.transport)):
            message = f"The {self.transport} peer is {reserved!r}, seeded from its settings."
            raise ValidationError({"transport": message})


class PeerCheckpoint(models.Model):
    """How far one direction of the exchange with a peer has got; persisted with what it covers."""

    class Direction(models.TextChoices):
        PULL = "pull", "Pull (their feed, our cursor into it)"
        PUSH = "push", "Push (our feed, acknowledged by them)"

    peer = models.ForeignKey(
        Peer, verbose_name="peer", on_delete=models.CASCADE, related_name="checkpoints"
    )
    direction = models.CharField(
        verbose_name="direction", max_length=4, choices=Direction.choices, help_text="Pull or push."
    )
    cursor = models.CharField(
        verbose_name="cursor",
        max_length=2000,
        blank=True,
        default="",
        help_text="Opaque feed cursor (a shared medium's holds one position per writer).",
    )
    session = models.CharField(
        verbose_name="session",
        max_length=32,
        blank=True,
        default="",
        help_text=(
            "Random id of the last checkpoint, recorded on both sides (the peer's ReplicationLog); "
            "a mismatch means one side was restored or rolled back: the direction starts over."
        ),
    )
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    class Meta:
        verbose_name = "peer checkpoint"
        verbose_name_plural = "peer checkpoints"
        constraints = [
            models.UniqueConstraint(
                fields=["peer", "direction"], name="configsync_checkpoint_peer_direction"
            )
        ]

    def __str__(self) -> str:
        return f"{self.peer_id}:{self.direction}@{self.cursor or 'start'}"


class ReplicationLog(models.Model):
    """The other side's copy of a peer's checkpoint: what ``node_id`` recorded about us.

    In the manner of CouchDB's replication log, each checkpoint of a direction is recorded on
    both nodes with the same random ``session``. A node restored from an older backup holds an
    older session than its peer's, and the direction starts over from the beginning
    (re-delivery is idempotent: it costs one full cycle, never data).
    """

    node_id = models.CharField(
        verbose_name="peer node id",
        max_length=64,
        help_text="The node that replicates with us and recorded this checkpoint.",
    )
    direction = models.CharField(
        verbose_name="direction",
        max_length=4,
        choices=PeerCheckpoint.Direction.choices,
        help_text="The direction as seen by that node (its pull from us, or its push to us).",
    )
    session = models.CharField(
        verbose_name="session", max_length=32, help_text="The checkpoint's session id."
    )
    cursor = models.CharField(
        verbose_name="cursor",
        max_length=2000,
        blank=True,
        default="",
        help_text="The cursor that checkpoint recorded.",
    )
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    class Meta:
        verbose_name = "replication log entry"
        verbose_name_plural = "replication log"
        constraints = [
            models.UniqueConstraint(
                fields=["node_id", "direction"], name="configsync_replication_log_node_direction"
            )
        ]

    def __str__(self) -> str:
        return f"{self.node_id}:{self.direction}@{self.session}"


class SyncRun(models.Model):
    """One sync cycle with one peer: what it did, or why it failed. Feeds the status view."""

    peer = models.ForeignKey(
        Peer, verbose_name="peer", on_delete=models.CASCADE, related_name="runs"
    )
    started_at = models.DateTimeField(verbose_name="started at", auto_now_add=True)
    finished_at = models.DateTimeField(verbose_name="finished at", null=True, blank=True)
    ok = models.BooleanField(verbose_name="succeeded", default=False)
    error = models.TextField(
        verbose_name="error", blank=True, default="", help_text="Why it failed (never a value)."
    )
    pulled = models.IntegerField(
        verbose_name="pulled", default=0, help_text="Changes applied from the peer."
    )
    pushed = models.IntegerField(
        verbose_name="pushed", default=0, help_text="Changes the peer accepted."
    )
    conflicts = models.IntegerField(
        verbose_name="conflicts", default=0, help_text="Conflicts detected."
    )
    quarantined = models.IntegerField(
        verbose_name="quarantined",
        default=0,
        help_text="Changes set aside because this node (or the peer) could not store them.",
    )
    skew_ms = models.BigIntegerField(
        verbose_name="clock skew (ms)",
        null=True,
        blank=True,
        help_text="Peer clock minus ours, as seen.",
    )

    class Meta:
        verbose_name = "sync run"
        verbose_name_plural = "sync runs"
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["peer", "-started_at"])]

    def __str__(self) -> str:
        return f"sync run {self.pk} ({'ok' if self.ok else 'failed'})"
