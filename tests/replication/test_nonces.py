"""Nonces of signed sync requests: one ``INSERT … ON CONFLICT DO NOTHING`` decides, the beat
prunes, and Django deletes them without fetching them (no delete receiver listens to them)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models.signals import post_delete, pre_delete
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from configsync import tasks
from configsync.models import ReplicatedRecord, SyncNonce, SystemConfig
from configsync.replication.signing import nonce_remember, sign
from tests.support.replication import REMOTE, SECRET, remote_change

PUSH = "/api/v1/sync/push"


def _post(body: dict[str, Any], headers: dict[str, str]) -> int:
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    raw = json.dumps(body).encode()
    response = APIClient().generic("POST", PUSH, raw, content_type="application/json", **extra)
    return int(response.status_code)


@pytest.mark.django_db
def test_a_nonce_is_accepted_once_in_one_statement() -> None:
    with CaptureQueriesContext(connection) as queries:
        first = nonce_remember(nonce="a" * 32, node=REMOTE)
    again = nonce_remember(nonce="a" * 32, node="node-other")  # whoever signs it
    assert (first, again) == (True, False)
    assert len(queries) == 1 and "ON CONFLICT" in queries[0]["sql"]
    assert SyncNonce.objects.get().node == REMOTE


@pytest.mark.django_db(transaction=True)
def test_the_same_request_sent_twice_at_once_is_applied_once(settings: Any) -> None:
    """Two processes receiving one request (a replay racing the original): the insert lets one
    through, the other is refused as a replay, and the change is applied once."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE): no concurrent inserts to race")
    body = {"changes": [remote_change("RACED", "1")]}
    headers = sign(
        secret=SECRET, method="POST", path=PUSH, body=json.dumps(body).encode(), node=REMOTE
    )
    start = threading.Barrier(2)
    codes: list[int] = []

    def send() -> None:
        try:
            start.wait()
            codes.append(_post(body, headers))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes) == [200, 401]
    assert SystemConfig.objects.filter(key="RACED").count() == 1
    assert ReplicatedRecord.objects.filter(natural_key="RACED").count() == 1
    assert SyncNonce.objects.count() == 1


@pytest.mark.django_db
def test_the_beat_prunes_old_nonces_in_one_delete(settings: Any) -> None:
    settings.CONFIGSYNC_SIGNATURE_MAX_AGE_SECONDS = 300
    now = timezone.now()
    SyncNonce.objects.bulk_create(
        [
            SyncNonce(nonce=f"old{i}", node=REMOTE, seen_at=now - timedelta(seconds=601 + i))
            for i in range(5)
        ]
        + [SyncNonce(nonce="recent", node=REMOTE, seen_at=now - timedelta(seconds=599))]
    )
    with CaptureQueriesContext(connection) as queries:
        assert tasks.nonces_prune.apply().get() == 5
    # Fast delete: no receiver listens to SyncNonce, so Django deletes without fetching rows.
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["DELETE"]
    assert list(SyncNonce.objects.values_list("nonce", flat=True)) == ["recent"]
    entry = tasks.beat_schedule()["configsync-nonces-prune"]
    assert entry["task"] == "configsync.tasks.nonces_prune"
    assert entry["schedule"] == timedelta(seconds=300)


@pytest.mark.django_db
def test_a_pruned_nonce_is_still_refused_as_stale(settings: Any) -> None:
    """Pruning loses no replay protection: a request older than the maximum age is refused for
    its timestamp before its nonce is looked at."""
    import configsync.replication.signing as signing

    settings.CONFIGSYNC_SIGNATURE_MAX_AGE_SECONDS = 300
    body = {"changes": [remote_change("OLD", "1")]}
    headers = sign(
        secret=SECRET, method="POST", path=PUSH, body=json.dumps(body).encode(), node=REMOTE
    )
    assert _post(body, headers) == 200
    SyncNonce.objects.update(seen_at=timezone.now() - timedelta(seconds=601))
    signing.nonces_prune()
    assert not SyncNonce.objects.exists()
    headers[signing.HEADER_TIMESTAMP] = str(int(headers[signing.HEADER_TIMESTAMP]) - 601)
    assert _post(body, headers) == 401  # stale (and its signature no longer matches either)


def test_replication_receivers_listen_to_registered_models_only() -> None:
    from configsync.replication import registry

    for rm in registry.all_registered():
        assert pre_delete.has_listeners(rm.model) and post_delete.has_listeners(rm.model)
    assert not pre_delete.has_listeners(SyncNonce)
    assert not post_delete.has_listeners(ReplicatedRecord)
