"""The audit trail: who did what to which record, where and when. Never a value."""

from __future__ import annotations

from django.db import models

from configsync import actor as acting


class AuditEvent(models.Model):
    """One audited action: a change of a record, a reveal, a key rotation, a mode switch.

    Append-only, written in the same transaction as what it records (``configsync.services.audit``:
    a change or a reveal whose event cannot be written does not happen). ``actor`` names the caller
    (``user:<name>``, ``api-key:<name> (<prefix>)``, ``cli:<os user>``, ``peer:<name>``,
    ``system``) and ``via`` the entry point (``configsync.actor.VIAS``). The record is named by
    model label and natural key. A value never appears: ``changed_fields`` lists the fields a
    change touched, and ``value_hashes`` holds, per sensitive field, a keyed hash of the new value
    (``configsync.services.audit.audit_value_hash``), so an operator can ask "was it this value?"
    without the trail holding it.
    """

    class Action(models.TextChoices):
        CREATE = "create", "Create"
        UPDATE = "update", "Update"
        DELETE = "delete", "Delete"
        REVEAL = "reveal", "Reveal"
        ROTATE_KEYS = "rotate_keys", "Key rotation"
        MODE_SWITCH = "mode_switch", "Mode switch"
        REVOKE_KEY = "revoke_key", "API key revoked"
        CREATE_KEY = "create_key", "API key created"
        CHANGE_KEY = "change_key", "API key changed"
        DELETE_KEY = "delete_key", "API key deleted"
        CHECK_VALUE = "check_value", "Value checked against a hash"
        RESTORE = "restore", "Snapshot restored"

    actor = models.CharField(
        verbose_name="actor",
        max_length=200,
        help_text="Who acted: a user, an API key, the command line's user, a peer or the system.",
    )
    via = models.CharField(
        verbose_name="via",
        max_length=16,
        choices=[(via, via) for via in acting.VIAS],
        default=acting.SYSTEM,
        db_index=True,
        help_text="The entry point: admin, api, cli, peer, envbridge, restore, rollback, …",
    )
    action = models.CharField(
        verbose_name="action",
        max_length=32,
        choices=Action.choices,
        db_index=True,
        help_text="What was done.",
    )
    model_label = models.CharField(
        verbose_name="model",
        max_length=100,
        blank=True,
        default="",
        help_text="The record's model, app_label.modelname (empty for node-wide actions).",
    )
    natural_key = models.CharField(
        verbose_name="natural key",
        max_length=255,
        blank=True,
        default="",
        help_text="The record's key or name.",
    )
    node_id = models.CharField(
        verbose_name="node",
        max_length=64,
        blank=True,
        default="",
        help_text="The node that recorded the event.",
    )
    origin_node = models.CharField(
        verbose_name="origin node",
        max_length=64,
        blank=True,
        default="",
        help_text="For a change: the node that made the version (another node's for a peer's).",
    )
    hlc = models.CharField(
        verbose_name="HLC timestamp",
        max_length=120,
        blank=True,
        default="",
        help_text="For a change: the version's hybrid logical clock timestamp.",
    )
    changed_fields = models.JSONField(
        verbose_name="changed fields",
        default=list,
        blank=True,
        help_text="Names of the fields the change touched.",
    )
    value_hashes = models.JSONField(
        verbose_name="value hashes",
        default=dict,
        blank=True,
        help_text="Per sensitive field, a keyed hash of the new value (never the value).",
    )
    details = models.JSONField(
        verbose_name="details",
        default=dict,
        blank=True,
        help_text="What else describes the action (counts, modes, a version number); no values.",
    )
    created_at = models.DateTimeField(
        verbose_name="when", auto_now_add=True, db_index=True, help_text="When it happened."
    )

    class Meta:
        verbose_name = "audit event"
        verbose_name_plural = "audit events"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model_label", "natural_key"], name="configsync_audit_record"),
        ]

    def __str__(self) -> str:
        target = f" {self.model_label}:{self.natural_key}" if self.model_label else ""
        return f"{self.actor} {self.action}{target}"
