"""Properties of reading and restoring snapshots from untrusted bytes.

``document_loads`` of any bytes, any JSON or a mutated valid document either returns the document
or refuses it with ``SnapshotError`` (never another exception); a mutated valid document, resealed
so its checksum holds, is restored (dry run and for real) or refused with ``SnapshotError`` with
nothing applied. Values are hostile on purpose: NUL and lone surrogates, wrong JSON types, keys
that do not match their record.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configsync.models import AuditEvent, ReplicatedRecord
from configsync.services.system_config import system_config_delete, system_config_set
from configsync.snapshots.document import SnapshotError, document_loads, document_seal
from configsync.snapshots.selectors import snapshot_document
from configsync.snapshots.services import snapshot_restore
from providers.services import ai_provider_set
from tests.fuzz.strategies import JSON_VALUE, mutated

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def state() -> list[tuple[Any, ...]]:
    return list(
        ReplicatedRecord.objects.order_by("model_label", "natural_key").values_list(
            "model_label", "natural_key", "seq", "deleted", "data"
        )
    )


@pytest.fixture
def valid(canary: str) -> dict[str, Any]:
    """A valid snapshot of a node with settings, a provider, a group and a tombstone."""
    system_config_set(key="DB_PASSWORD", value=canary, is_sensitive=True)
    system_config_set(key="WORKERS", value="4", value_type="int")
    system_config_set(key="OLD", value="x")
    system_config_delete(key="OLD")
    ai_provider_set(name="main", kind="openai", api_key=canary, is_default=True)
    Group.objects.create(name="ops")
    return snapshot_document()


def _in_record_data(path: tuple[Any, ...]) -> bool:
    """Inside a record's data, where a restore would write."""
    return len(path) > 3 and path[0] == "records" and path[2] == "data"


def _loads_or_refuses(data: bytes) -> dict[str, Any] | None:
    try:
        return document_loads(data)
    except SnapshotError:
        return None


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_are_read_or_refused(data: bytes) -> None:
    _loads_or_refuses(data)


@FUZZ
@given(value=JSON_VALUE)
def test_any_json_is_read_or_refused(value: Any) -> None:
    try:
        text = json.dumps(value, ensure_ascii=False)
        data = text.encode("utf-8", "surrogatepass")
    except ValueError:
        return
    _loads_or_refuses(data)
    _loads_or_refuses(json.dumps(value).encode())  # surrogates as \\u escapes


@FUZZ
@given(data=st.data())
def test_a_mutated_document_is_refused_or_restored_never_half_applied(
    valid: dict[str, Any], data: st.DataObject
) -> None:
    document = data.draw(mutated(valid, focus=_in_record_data))
    if data.draw(st.integers(0, 4)) > 0:  # mostly resealed, so the checksum lets it through
        # A lone surrogate cannot be sealed (UTF-8): the old checksum then stays.
        with contextlib.suppress(UnicodeEncodeError):
            document = document_seal({k: v for k, v in document.items() if k != "checksum"})
    raw = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
    loaded = _loads_or_refuses(raw)
    if loaded is None:
        return
    for dry_run in (True, False):
        with transaction.atomic():
            before, events = state(), AuditEvent.objects.count()
            try:
                snapshot_restore(document=loaded, dry_run=dry_run)
            except SnapshotError as exc:
                assert "sk-CANARY" not in str(exc)
                assert state() == before and AuditEvent.objects.count() == events
            transaction.set_rollback(True)


@pytest.mark.parametrize("text", ["\\ud800", "\\udfff", "a\\u0000b"])
def test_text_no_node_stores_is_refused_by_name_before_the_checksum(
    valid: dict[str, Any], text: str
) -> None:
    raw = json.dumps(valid).replace('"description": ""', f'"description": "{text}"', 1)

    with pytest.raises(SnapshotError, match="malformed snapshot: a text contains a"):
        document_loads(raw.encode())
