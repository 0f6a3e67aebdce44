from django.db import models


class SyncNonce(models.Model):
    """A nonce of a signed sync request, remembered for the signature's maximum age.

    Kept in the database so every process of a node (web workers, Celery) sees the same set: a
    replayed request is refused whichever process receives it. Old rows are pruned by the beat
    (``configsync.replication.signing.nonces_prune``).
    """

    nonce = models.CharField(
        verbose_name="nonce", max_length=64, unique=True, help_text="Random per request."
    )
    node = models.CharField(
        verbose_name="node", max_length=64, help_text="Node id that signed the request."
    )
    seen_at = models.DateTimeField(
        verbose_name="seen at", db_index=True, help_text="When the request arrived."
    )

    class Meta:
        verbose_name = "sync nonce"
        verbose_name_plural = "sync nonces"

    def __str__(self) -> str:
        return f"{self.node}:{self.nonce}"
