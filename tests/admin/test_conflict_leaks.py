"""The conflict page never shows a value the history masks: a plain value of a setting that
the other side keeps sensitive."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from configsync.models import Conflict
from tests.factories import CANARY_SECRET
from tests.support.conflicts import setting_conflict

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("plain_side", ["local", "remote"])
def test_a_plain_value_against_a_sensitive_version_is_masked(
    admin_client: Client, plain_side: str
) -> None:
    """One node made the setting sensitive while the other still wrote it plain: the plain value
    is the secret (or its predecessor) and is masked, as in the history."""
    conflict = setting_conflict(
        "DB_PASSWORD", local="sk-CANARY-local-0000", remote="x", sensitive=True
    )
    side = f"{plain_side}_version"
    stored = getattr(conflict, side)
    plain = {**stored["data"], "is_sensitive": False, "secret_value": None, "value": CANARY_SECRET}
    Conflict.objects.filter(pk=conflict.pk).update(**{side: {**stored, "data": plain}})

    response = admin_client.get(reverse("admin:configsync_conflict_change", args=[conflict.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "CANARY" not in page
    row = page.split('data-field="value"')[1].split("</tr>")[0]
    assert "********" in row and "(secret)" in row and "different values" in row
