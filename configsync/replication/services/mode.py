"""Switching this node's deployment mode at run time (``configsync mode set``, the admin)."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import transaction

from configsync.conf import DEPLOYMENT_MODES
from configsync.models import AuditEvent, NodeIdentity
from configsync.services.audit import audit_action
from configsync.services.node import node_id

logger = logging.getLogger(__name__)


def deployment_mode_set(*, mode: str, actor: str) -> str:
    """Store ``mode`` as this node's deployment mode (``""``: back to the settings); returns it.

    ``ValidationError`` naming the modes for an unknown one, and nothing changes. The mode is
    this node's choice: it is stored on ``NodeIdentity`` (not a replicated model) and never
    leaves the node. Workers and beat read it at their next cycle. Logged (who, from, to) and
    audited in the same transaction (``mode_switch``, details ``{"from", "to"}``, ``"settings"``
    for the mode the settings give): if the event cannot be written the mode stays
    (``AuditWriteError``). Setting the mode it already has records nothing.
    """
    mode = (mode or "").strip()
    if mode not in ("", *DEPLOYMENT_MODES):
        raise ValidationError(
            f"unknown deployment mode {mode[:40]!r}: use one of {', '.join(DEPLOYMENT_MODES)}"
        )
    node_id()  # the row exists
    with transaction.atomic():
        row = NodeIdentity.objects.select_for_update().order_by("pk").first()
        assert row is not None
        previous = row.deployment_mode
        if previous != mode:
            NodeIdentity.objects.filter(pk=row.pk).update(deployment_mode=mode)
            audit_action(
                action=AuditEvent.Action.MODE_SWITCH,
                details={"from": previous or "settings", "to": mode or "settings"},
                actor=actor,
            )
            logger.info(
                "deployment mode set by %s: %s -> %s",
                actor[:200],
                previous or "(settings)",
                mode or "(settings)",
            )
    return mode
