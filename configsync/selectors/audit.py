"""Reads of the audit trail: events filtered for people and for export. Never write.

One filter, :func:`audit_events`, serves the command line (``configsync audit``), the admin's
export and the API (``GET /api/v1/audit/``); one parser, :func:`audit_since_parse`, reads every
"since" an operator types. :func:`audit_event_export` is the export format: one flat dictionary
per event with the names in :data:`AUDIT_EXPORT_FIELDS`, which are stable (a JSON lines export
read by another tool keeps working): add names, never rename or drop one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from configsync import actor as acting
from configsync.models import AuditEvent

AUDIT_EXPORT_FIELDS = (
    "id",
    "at",
    "actor",
    "via",
    "action",
    "model",
    "key",
    "node",
    "origin_node",
    "hlc",
    "changed_fields",
    "value_hashes",
    "details",
)
"""The fields of an exported event, in order (``configsync audit --json/--jsonl``, the admin's
export, the API): ``at`` is the time in UTC, ISO 8601 with microseconds; ``model`` and ``key``
name the record (empty for a node-wide action); ``node`` is the node that recorded the event;
``value_hashes`` maps each sensitive field to its keyed hash (``hmac1:<key id>:<hex>``, or
``unreadable``), never a value."""

_RELATIVE = re.compile(r"^([1-9][0-9]{0,6})([smhdw])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_HELP = (
    "a time ago (30m, 1h, 2d, 1w; s/m/h/d/w), a date (2026-12-01: from 00:00 UTC) or an ISO date "
    "and time (2026-12-01T08:00:00+01:00; without an offset, UTC)"
)


def audit_since_parse(when: str | date | datetime, *, now: datetime | None = None) -> datetime:
    """The moment ``when`` names, aware: a ``datetime`` (naive: in ``TIME_ZONE``), a ``date``
    (its first moment), or text: :data:`SINCE_HELP`. ``ValidationError`` naming ``since``
    otherwise (the message quotes at most 40 characters of the input, which is never a value)."""
    moment: datetime | None
    if isinstance(when, datetime):
        moment = when
    elif isinstance(when, date):
        moment = datetime.combine(when, time.min)
    else:
        text = when.strip()
        relative = _RELATIVE.match(text)
        if relative:
            amount, unit = relative.groups()
            return (now or timezone.now()) - timedelta(**{_UNITS[unit]: int(amount)})
        try:
            moment = parse_datetime(text)
            if moment is None:
                day = parse_date(text)
                moment = datetime.combine(day, time.min) if day is not None else None
        except ValueError:
            moment = None
        if moment is None:
            raise ValidationError({"since": f"{text[:40]!r} is not a time: use {SINCE_HELP}."})
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _one_of(field: str, value: str, allowed: list[str]) -> str:
    if value not in allowed:
        raise ValidationError({field: f"{value[:40]!r} is not one of {', '.join(allowed)}."})
    return value


def audit_events(
    *,
    since: str | date | datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    via: str | None = None,
    model: str | None = None,
    key: str | None = None,
    node: str | None = None,
) -> QuerySet[AuditEvent]:
    """Audit events, newest first, filtered by every argument given.

    ``since``: see :func:`audit_since_parse`. ``action`` and ``via`` must be one of
    ``AuditEvent.Action`` / ``configsync.actor.VIAS``; ``actor`` matches any part of the actor,
    case-insensitively (``alice`` finds ``user:alice``; ``api-key:`` every key); ``model`` is a
    model label (``configsync.systemconfig``, case-insensitive); ``key`` is a record's natural key
    (exact); ``node`` the recording node's id. ``ValidationError`` naming the argument for an
    unknown action or via, or a since that is no time.
    """
    events = AuditEvent.objects.all()
    if since is not None and since != "":
        events = events.filter(created_at__gte=audit_since_parse(since))
    if action:
        events = events.filter(action=_one_of("action", action, list(AuditEvent.Action.values)))
    if via:
        events = events.filter(via=_one_of("via", via, list(acting.VIAS)))
    if actor:
        events = events.filter(actor__icontains=actor)
    if model:
        events = events.filter(model_label=model.strip().lower())
    if key:
        events = events.filter(natural_key=key)
    if node:
        events = events.filter(node_id=node)
    return events.order_by("-created_at", "-id")


def audit_event_get(*, event_id: int) -> AuditEvent | None:
    """The event with this id, or ``None``."""
    return AuditEvent.objects.filter(pk=event_id).first()


def audit_hashed_field(*, event: AuditEvent, field: str | None) -> str:
    """The sensitive field of ``event`` to compare a value with: ``field``, or the only one it
    hashed when ``None``. ``ValidationError`` naming ``event`` (it hashed no value) or ``field``
    (several were hashed, or not that one)."""
    hashes = sorted(event.value_hashes or {})
    if not hashes:
        raise ValidationError({"event": f"Audit event {event.pk} recorded no sensitive value."})
    if field is None:
        if len(hashes) > 1:
            raise ValidationError(
                {
                    "field": f"Audit event {event.pk} hashed several fields: name one of "
                    f"{', '.join(hashes)}."
                }
            )
        return hashes[0]
    if field not in hashes:
        raise ValidationError({"field": f"Audit event {event.pk} hashed only {', '.join(hashes)}."})
    return field


def audit_event_export(event: AuditEvent) -> dict[str, Any]:
    """``event`` in the export format (:data:`AUDIT_EXPORT_FIELDS`, in that order)."""
    return {
        "id": event.pk,
        "at": event.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "via": event.via,
        "action": event.action,
        "model": event.model_label,
        "key": event.natural_key,
        "node": event.node_id,
        "origin_node": event.origin_node,
        "hlc": event.hlc,
        "changed_fields": list(event.changed_fields or []),
        "value_hashes": dict(event.value_hashes or {}),
        "details": dict(event.details or {}),
    }


def audit_events_export(
    events: QuerySet[AuditEvent], *, limit: int | None = None, chunk_size: int = 500
) -> Iterator[dict[str, Any]]:
    """``events`` in the export format, oldest first (the order they happened: an export can be
    appended to by a later ``--since``), read in chunks so a large trail streams. ``limit``: the
    newest ``limit`` of them only (still oldest first)."""
    if limit is not None:
        newest = list(events.order_by("-created_at", "-id")[:limit])
        for event in reversed(newest):
            yield audit_event_export(event)
        return
    for event in events.order_by("created_at", "id").iterator(chunk_size=chunk_size):
        yield audit_event_export(event)
