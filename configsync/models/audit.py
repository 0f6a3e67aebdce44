"""The audit trail: who did what to which record, and when. Never a value."""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One audited action, e.g. the reveal of a sensitive value. Append-only.

    ``actor`` names the caller (``user:<username>`` or ``api-key:<name> (<prefix>)``); the record
    is named by model label and natural key. The value itself is never stored here.
    """

    class Action(models.TextChoices):
        REVEAL = "reveal", "Reveal"

    actor = models.CharField(
        verbose_name="actor", max_length=200, help_text="Who acted: a user or an API key."
    )
    action = models.CharField(
        verbose_name="action", max_length=32, choices=Action.choices, help_text="What was done."
    )
    model_label = models.CharField(
        verbose_name="model", max_length=100, help_text="The record's model, app_label.modelname."
    )
    natural_key = models.CharField(
        verbose_name="natural key", max_length=255, help_text="The record's key or name."
    )
    created_at = models.DateTimeField(
        verbose_name="when", auto_now_add=True, db_index=True, help_text="When it happened."
    )

    class Meta:
        verbose_name = "audit event"
        verbose_name_plural = "audit events"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.model_label}:{self.natural_key}"
