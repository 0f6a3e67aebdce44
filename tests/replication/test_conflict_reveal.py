"""Choosing a conflict's version that holds a plain value of a setting that is sensitive shows
that value: like a rollback, it needs the reveal right and is audited as a reveal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from configsync.models import AuditEvent, Conflict, SystemConfig
from configsync.replication.services.conflicts import conflict_resolve
from configsync.services.audit import RevealRequired
from tests.support.conflicts import setting_conflict

pytestmark = pytest.mark.django_db

PLAIN = "sk-CANARY-plain-before-0000"


def plain_remote_conflict() -> Conflict:
    """This node keeps DB_PASSWORD sensitive; the peer's losing version wrote it plain."""
    conflict = setting_conflict(
        "DB_PASSWORD", local="sk-CANARY-local-0000", remote="x", sensitive=True
    )
    remote = conflict.remote_version
    data = {**remote["data"], "is_sensitive": False, "secret_value": None, "value": PLAIN}
    Conflict.objects.filter(pk=conflict.pk).update(remote_version={**remote, "data": data})
    return conflict


def test_the_service_refuses_without_the_reveal_right_and_writes_nothing() -> None:
    conflict = plain_remote_conflict()
    with pytest.raises(RevealRequired) as refused:
        conflict_resolve(conflict_id=conflict.pk, choice="remote")
    assert PLAIN not in str(refused.value)
    assert SystemConfig.objects.get(key="DB_PASSWORD").is_sensitive
    assert Conflict.objects.get(pk=conflict.pk).status == Conflict.Status.OPEN
    assert not AuditEvent.objects.filter(action="reveal").exists()


def test_the_api_needs_the_reveal_scope_and_audits_the_reveal(
    client_for: Callable[[str], APIClient],
) -> None:
    from tests.support.api import key_client

    conflict = plain_remote_conflict()
    url = f"/api/v1/sync/conflicts/{conflict.pk}/resolve"

    refused = client_for("write").post(url, {"choice": "remote"}, format="json")
    assert refused.status_code == 403
    assert PLAIN.encode() not in refused.content
    assert SystemConfig.objects.get(key="DB_PASSWORD").is_sensitive

    allowed = key_client(write=True, reveal=True, name="resolver").post(
        url, {"choice": "remote"}, format="json"
    )
    assert allowed.status_code == 200, allowed.content
    record = SystemConfig.objects.get(key="DB_PASSWORD")
    assert (record.is_sensitive, record.value) == (False, PLAIN)
    reveal = AuditEvent.objects.get(action="reveal", natural_key="DB_PASSWORD")
    assert reveal.via == "resolve" and reveal.actor.startswith("api-key:")


def test_choosing_the_sensitive_side_needs_no_reveal() -> None:
    conflict = plain_remote_conflict()
    resolved = conflict_resolve(conflict_id=conflict.pk, choice="local")
    assert resolved.status == Conflict.Status.RESOLVED
    assert SystemConfig.objects.get(key="DB_PASSWORD").is_sensitive
    assert not AuditEvent.objects.filter(action="reveal").exists()
