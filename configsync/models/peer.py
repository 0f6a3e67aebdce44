from django.db import models


class Peer(models.Model):
    """Another node of this replication group, synced full-duplex. Seeded from CONFIGSYNC_PEERS."""

    name = models.SlugField(
        verbose_name="name",
        max_length=64,
        unique=True,
        help_text="Local name of the peer, e.g. cloud.",
    )
    base_url = models.URLField(
        verbose_name="base URL",
        max_length=500,
        help_text="The peer's root URL, e.g. https://cfg.example.com.",
    )
    enabled = models.BooleanField(
        verbose_name="enabled", default=True, help_text="Disabled peers are not synced."
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
        max_length=100,
        blank=True,
        default="",
        help_text="Opaque feed cursor.",
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
