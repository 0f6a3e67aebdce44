"""The audit trail's reads: one parser for every "since", filters, and API key events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from configsync.actor import CLI, acting
from configsync.models import AuditEvent
from configsync.selectors.audit import audit_events, audit_since_parse
from configsync.services.api_keys import api_key_create, api_key_revoke, api_key_update

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("1h", NOW - timedelta(hours=1)),
        ("2d", NOW - timedelta(days=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("45s", NOW - timedelta(seconds=45)),
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
        ("2026-11-30T08:00:00", datetime(2026, 11, 30, 8, tzinfo=UTC)),
        ("2026-11-30T08:00:00+02:00", datetime(2026, 11, 30, 6, tzinfo=UTC)),
        (" 1h ", NOW - timedelta(hours=1)),
    ],
    ids=["30m", "1h", "2d", "1w", "45s", "date", "naive", "offset", "spaces"],
)
def test_since_forms(text: str, expected: datetime) -> None:
    assert audit_since_parse(text, now=NOW) == expected


def test_since_takes_dates_and_datetimes() -> None:
    assert audit_since_parse(date(2026, 1, 2)) == datetime(2026, 1, 2, tzinfo=UTC)
    assert audit_since_parse(datetime(2026, 1, 2, 3)) == datetime(2026, 1, 2, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "1", "0h", "-1h", "1y", "2026-02-30", "h1", "x" * 500],
    ids=["empty", "word", "bare", "zero", "negative", "unit", "day", "reversed", "long"],
)
def test_since_refuses_anything_else_clearly(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        audit_since_parse(text, now=NOW)
    message = caught.value.message_dict["since"][0]
    assert "30m" in message and "2026-12-01" in message and len(message) < 300


@pytest.mark.django_db
def test_unknown_action_or_via_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        audit_events(action="explode")
    assert "action" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        audit_events(via="mail")
    assert "via" in caught.value.message_dict


@pytest.mark.django_db
def test_api_key_writes_are_audited_by_name_and_prefix_never_the_key() -> None:
    with acting(actor="cli:ops", via=CLI):
        record, key = api_key_create(name="svc", can_write=True)
        api_key_update(
            prefix=record.prefix,
            name="svc",
            can_write=False,
            can_reveal=False,
            expiry_date=None,
            revoked=False,
        )
        api_key_update(  # nothing changes: nothing recorded
            prefix=record.prefix,
            name="svc",
            can_write=False,
            can_reveal=False,
            expiry_date=None,
            revoked=False,
        )
        api_key_revoke(prefix=record.prefix)
        api_key_revoke(prefix=record.prefix)  # already revoked: nothing recorded
    events = list(AuditEvent.objects.order_by("id"))
    assert [(e.action, e.actor, e.via) for e in events] == [
        ("create_key", "cli:ops", "cli"),
        ("change_key", "cli:ops", "cli"),
        ("revoke_key", "cli:ops", "cli"),
    ]
    assert events[1].details["changed"] == ["can_write"]
    assert all(e.details["prefix"] == record.prefix for e in events)
    assert all(
        key not in str(e.details) and key.split(".")[-1] not in str(e.details) for e in events
    )


@pytest.mark.django_db
def test_revoking_through_update_is_a_revoke_event() -> None:
    record, _ = api_key_create(name="svc")
    api_key_update(
        prefix=record.prefix, name="svc", can_write=False, can_reveal=False, expiry_date=None,
        revoked=True,
    )  # fmt: skip
    assert AuditEvent.objects.filter(action="revoke_key").count() == 1
    assert not AuditEvent.objects.filter(action="change_key").exists()
