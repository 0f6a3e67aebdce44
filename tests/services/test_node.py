"""This node's identity: created once at start-up (after ``migrate``), read without writing."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from configsync.models import NodeIdentity
from configsync.selectors.node import NodeIdentityMissing
from configsync.selectors.node import node_id as node_id_read
from configsync.services.node import node_id, node_id_reset_cache, node_identity_ensure

pytestmark = pytest.mark.django_db


def test_migrate_created_the_identity_before_anyone_asked() -> None:
    # The test database was migrated; nothing in this test has asked for the id yet.
    assert NodeIdentity.objects.count() == 1
    stored = NodeIdentity.objects.get().node_id
    assert stored.startswith("node-")
    assert node_id_read() == stored == node_id()


def test_reading_the_identity_never_writes() -> None:
    NodeIdentity.objects.all().delete()
    node_id_reset_cache()
    with CaptureQueriesContext(connection) as queries, pytest.raises(NodeIdentityMissing):
        node_id_read()
    assert all(q["sql"].lstrip().upper().startswith("SELECT") for q in queries.captured_queries)
    assert not NodeIdentity.objects.exists()


def test_a_writer_creates_the_identity_once_and_migrate_keeps_it() -> None:
    NodeIdentity.objects.all().delete()
    node_id_reset_cache()
    created = node_id()  # a writer (e.g. the first local change) creates it if missing
    assert NodeIdentity.objects.get().node_id == created
    call_command("migrate", verbosity=0)  # post_migrate: ensure, never regenerate
    node_id_reset_cache()
    assert node_id_read() == created == node_identity_ensure()
    assert NodeIdentity.objects.count() == 1


@override_settings(CONFIGSYNC_NODE_ID="configured-node")
def test_the_configured_id_wins() -> None:
    assert node_id_read() == "configured-node" == node_id()
    assert NodeIdentity.objects.get().node_id != "configured-node"
