from django.db import models

from configsync.crypto.fields import EncryptedTextField


class EnvBridgeBase(models.Model):
    """The base of the .env bridge's three-way merge: one variable's value at the last run.

    One row per (file, variable) the bridge manages and has seen agree on both sides; its
    existence is what "the bridge had managed it" means (a variable removed from the file deletes
    its record only then). Like ``SystemConfig``, a sensitive base is kept only as ciphertext
    (never a plaintext nor a digest one could test guesses against); a plain one as text, so
    ordinary values are not registered with the log-masking filter as if they were secrets.
    Read it with :meth:`base`. Local to this node (each node has its own file); never replicated.
    """

    natural_key_field = "natural_key"

    natural_key = models.CharField(
        verbose_name="natural key",
        max_length=1300,
        unique=True,
        help_text="'<absolute file path>|<variable name>'; binds the ciphertext to its row.",
    )
    path = models.CharField(
        verbose_name="file",
        max_length=1024,
        db_index=True,
        help_text="Absolute path of the .env file (symlinks resolved).",
    )
    variable = models.CharField(
        verbose_name="variable", max_length=255, help_text="Variable name in the file."
    )
    is_sensitive = models.BooleanField(
        verbose_name="sensitive",
        default=False,
        help_text="The base is a secret: kept only as ciphertext in base_secret.",
    )
    base_value = models.TextField(
        verbose_name="base value",
        blank=True,
        default="",
        help_text="Canonical text both sides held after the last run; empty when sensitive.",
    )
    base_secret = EncryptedTextField(
        verbose_name="base secret",
        help_text="Ciphertext of a sensitive base (AES-GCM); NULL when not sensitive or empty.",
    )
    synced_at = models.DateTimeField(
        verbose_name="synced at", auto_now=True, help_text="When both sides last agreed."
    )

    class Meta:
        verbose_name = ".env bridge base"
        verbose_name_plural = ".env bridge bases"
        ordering = ["path", "variable"]

    def __str__(self) -> str:
        return self.natural_key

    @staticmethod
    def make_natural_key(path: str, variable: str) -> str:
        return f"{path}|{variable}"

    def base(self) -> str:
        """The base's canonical text (decrypted when sensitive; ``DecryptionError`` on failure)."""
        if self.is_sensitive:
            return self.base_secret or ""
        return self.base_value

    def set_base(self, text: str, *, sensitive: bool) -> None:
        """Store ``text`` as the base, encrypted when ``sensitive``."""
        self.is_sensitive = sensitive
        # Assigning "" to the encrypted field stores NULL ("no secret"): base() reads it as "".
        self.base_value = "" if sensitive else text
        self.base_secret = text if sensitive else ""
