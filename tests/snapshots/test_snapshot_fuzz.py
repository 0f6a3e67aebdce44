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

pytestmark = pytest.mark.django_db

HOSTILE = st.sampled_from(["\x00", "\ud800", "\udfff", "é", "\u2028", '"', "\\", " ", "enc1:x:y"])
TEXT = st.one_of(
    st.text(max_size=12),
    st.lists(st.one_of(st.text(max_size=4), HOSTILE), max_size=5).map("".join),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON_VALUE = st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
)
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


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member or item of a JSON value (not the root)."""
    found: list[tuple[Any, ...]] = []
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for name, child in children:
        found.append((*prefix, name))
        found.extend(_paths(child, (*prefix, name)))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with one to three members replaced, removed or added."""
    copy = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(copy)
        # Half the time inside a record's data, where a restore would write.
        inside = [p for p in paths if len(p) > 3 and p[0] == "records" and p[2] == "data"]
        pick = inside if inside and draw(st.booleans()) else paths
        path = draw(st.sampled_from(pick))
        parent: Any = copy
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON_VALUE)
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(TEXT)] = draw(JSON_VALUE)
        else:
            parent.append(draw(JSON_VALUE))
    return copy


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
    document = data.draw(mutated(valid))
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
