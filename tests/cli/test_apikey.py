"""``configsync apikey``: ``--expires``, expiry and state in ``list``, ``revoke NAME|PREFIX``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from configsync.cli.apikey import parse_expiry
from configsync.models import ServiceAPIKey
from configsync.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW + timedelta(days=30)),
        ("12h", NOW + timedelta(hours=12)),
        ("90m", NOW + timedelta(minutes=90)),
        ("2w", NOW + timedelta(weeks=2)),
        ("2026-12-31", datetime(2026, 12, 31, tzinfo=UTC)),
        ("2026-12-31T18:00:00", datetime(2026, 12, 31, 18, tzinfo=UTC)),
        ("2026-12-31T18:00:00+02:00", datetime(2026, 12, 31, 16, tzinfo=UTC)),
    ],
)
def test_parse_expiry(text: str, expected: datetime) -> None:
    assert parse_expiry(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "30", "0d", "30y", "d30", "2026-13-01", "tomorrow", "-1d"])
def test_parse_expiry_refuses(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_expiry(text, now=NOW)
    assert "expires" in caught.value.message_dict


def test_create_with_expires_stores_it_and_list_shows_it(cli: Any) -> None:
    before = timezone.now()
    result = cli("apikey", "create", "temp", "--expires", "30d")
    assert result.code == 0, result.err
    record = ServiceAPIKey.objects.get(name="temp")
    assert record.expiry_date is not None
    assert before + timedelta(days=30) <= record.expiry_date <= timezone.now() + timedelta(days=30)
    assert "expires " in result.err and result.last_line not in result.err
    listed = json.loads(cli("apikey", "list", "--json").out)
    assert listed[0]["expires"] == record.expiry_date.isoformat()
    assert listed[0]["state"] == "usable" and listed[0]["revoked"] is False
    shown = f"expires {record.expiry_date.isoformat(timespec='seconds')}"
    assert shown in cli("apikey", "list").out


def test_create_with_a_past_or_malformed_expiry_fails_and_saves_nothing(cli: Any) -> None:
    past = cli("apikey", "create", "old", "--expires", "2001-01-01")
    assert past.code == 1 and "expiry_date: The expiry is in the past." in past.err
    bad = cli("apikey", "create", "old", "--expires", "soon")
    assert bad.code == 1 and bad.err.startswith("configsync: expires: Use a duration")
    assert not ServiceAPIKey.objects.exists()


def test_list_shows_expired_and_revoked(cli: Any) -> None:
    expired, _ = api_key_create(name="expired", expiry_date=timezone.now() + timedelta(days=1))
    ServiceAPIKey.objects.filter(pk=expired.pk).update(
        expiry_date=timezone.now() - timedelta(days=1)
    )
    cli("apikey", "create", "gone")
    assert cli("apikey", "revoke", "gone").code == 0
    cli("apikey", "create", "live")
    states = {row["name"]: row["state"] for row in json.loads(cli("apikey", "list", "--json").out)}
    assert states == {"expired": "expired", "gone": "revoked", "live": "usable"}
    lines = {line.split()[1]: line for line in cli("apikey", "list").out.splitlines()}
    assert lines["expired"].endswith("  expired") and lines["gone"].endswith("  revoked")
    assert not lines["live"].endswith(("expired", "revoked"))


def test_revoke_by_name_and_by_prefix(cli: Any) -> None:
    by_name = cli("apikey", "create", "by-name").last_line
    by_prefix = cli("apikey", "create", "by-prefix").last_line
    assert cli("apikey", "revoke", "by-name").code == 0
    prefix = by_prefix.split(".", 1)[0]
    result = cli("apikey", "revoke", prefix)
    assert result.code == 0 and "by-prefix" in result.out and "already" not in result.out
    for key in (by_name, by_prefix):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        response = client.get("/api/v1/configs/system/")
        assert (response.status_code, response.json()["detail"]) == (401, "API key revoked.")
    again = cli("apikey", "revoke", "by-name")
    assert again.code == 0 and "(it already was)" in again.out


def test_revoke_refuses_a_name_shared_by_live_keys(cli: Any) -> None:
    first = cli("apikey", "create", "twin").last_line.split(".", 1)[0]
    second = cli("apikey", "create", "twin").last_line.split(".", 1)[0]
    result = cli("apikey", "revoke", "twin")
    assert result.code == 1
    assert "2 API keys have this name; revoke one by prefix" in result.err
    assert first in result.err and second in result.err
    assert not ServiceAPIKey.objects.filter(revoked=True).exists()
    assert cli("apikey", "revoke", first).code == 0
    # One twin left live: the name now names it.
    assert cli("apikey", "revoke", "twin").code == 0
    assert ServiceAPIKey.objects.filter(revoked=True).count() == 2
