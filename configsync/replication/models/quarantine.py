from django.db import models


class QuarantinedChange(models.Model):
    """A replicated change this node could not store, kept aside so it wedges nothing.

    A feed item that fails validation (a value that does not parse as its type, a token bound to
    another record, a character a backend cannot store, a timestamp beyond the allowed skew, ...)
    is kept here with its reason while the rest of its page applies and the cursor moves on.
    ``payload`` is the item as received, as ASCII JSON text (``\\u0000`` and lone surrogates
    escaped), so any item can be kept on every backend; sensitive values in it are the sender's
    ciphertext tokens. Open items are retried every cycle (a held future timestamp applies once
    it is within the bound, a missing key once it is configured); an operator may retry or drop.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        APPLIED = "applied", "Applied"
        DROPPED = "dropped", "Dropped"

    source = models.CharField(
        verbose_name="source",
        max_length=255,
        help_text="Where the change came from: a peer's name (or its node id).",
    )
    source_node = models.CharField(
        verbose_name="source node",
        max_length=64,
        blank=True,
        default="",
        help_text="Node id of the peer that delivered it.",
    )
    model_label = models.CharField(
        verbose_name="model",
        max_length=100,
        blank=True,
        default="",
        help_text="Replicated model named by the item, when it names one.",
    )
    natural_key = models.CharField(
        verbose_name="natural key",
        max_length=255,
        blank=True,
        default="",
        help_text="Key named by the item (escaped, truncated), when it names one.",
    )
    hlc = models.CharField(
        verbose_name="HLC timestamp",
        max_length=120,
        blank=True,
        default="",
        help_text="The item's timestamp as sent (escaped, truncated).",
    )
    reason = models.TextField(
        verbose_name="reason", help_text="Why it was not applied (never a value)."
    )
    payload = models.TextField(
        verbose_name="payload",
        help_text="The item as received, ASCII JSON text; secrets are ciphertext tokens.",
    )
    fingerprint = models.CharField(
        verbose_name="fingerprint",
        max_length=64,
        unique=True,
        help_text="SHA-256 of the payload: the same item received again is kept once.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=10,
        choices=Status.choices,
        default=Status.OPEN,
        db_index=True,
        help_text="Open until it applies on a retry or an operator drops it.",
    )
    attempts = models.IntegerField(
        verbose_name="attempts", default=1, help_text="How many times it was tried."
    )
    received_at = models.DateTimeField(verbose_name="received at", auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name="updated at", auto_now=True)

    class Meta:
        verbose_name = "quarantined change"
        verbose_name_plural = "quarantined changes"
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model_label or '?'}:{self.natural_key or '?'} ({self.status})"
