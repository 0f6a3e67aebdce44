"""Fuzzed snapshot files (``configsync/snapshots``) at the byte level, their promotion, and the
writer/reader round trip. (Mutated documents restored for real: ``tests/snapshots/
test_snapshot_fuzz.py``.)

Properties: a valid snapshot file with a few bytes flipped, cut, repeated or inserted is refused
with ``SnapshotError`` or still reads as the very same document, and a restore of it changes
nothing unless it is that document; promoting any document ``document_loads`` accepts (mutated
and resealed) answers a promoted document that loads again, or ``SnapshotError``; writing a
snapshot and loading it back gives the same document, for any values the records hold.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from configsync.services.audit import RevealRequired
from configsync.services.system_config import system_config_set
from configsync.snapshots.document import (
    SnapshotError,
    document_dumps,
    document_loads,
    document_seal,
)
from configsync.snapshots.promotion import promote_document
from configsync.snapshots.selectors import snapshot_document
from configsync.snapshots.services import snapshot_load, snapshot_restore, snapshot_save
from tests.fuzz.strategies import FUZZ, JSON_VALUE, TEXT, mutated, mutated_bytes
from tests.support.fuzz import remote_batch, state

pytestmark = pytest.mark.django_db


@pytest.fixture
def valid(canary: str) -> dict[str, Any]:
    """A snapshot of a node holding every kind of record (``remote_batch``'s, made here)."""
    from configsync.replication.services.receive import changes_receive

    changes_receive(changes=remote_batch(canary), source_node="node-remote", source_name="peer")
    return snapshot_document()


def _loaded(data: bytes) -> dict[str, Any] | None:
    try:
        return document_loads(data)
    except SnapshotError as exc:
        assert "sk-CANARY" not in str(exc)
        return None


@FUZZ
@given(data=st.data())
def test_a_damaged_file_is_refused_or_is_the_same_document(
    valid: dict[str, Any], data: st.DataObject
) -> None:
    damaged = data.draw(mutated_bytes(document_dumps(valid)))
    loaded = _loaded(damaged)
    if loaded is None:
        return
    assert loaded == valid  # only the bytes between the members may change
    with transaction.atomic():
        before = state()
        report = snapshot_restore(document=loaded, dry_run=False)
        assert report.count("added") == report.count("removed") == report.count("changed") == 0
        assert state()["feed"] == before["feed"]
        transaction.set_rollback(True)


@FUZZ
@given(data=st.data(), mode=st.sampled_from(["full", "content-only", "other"]))
def test_promoting_any_readable_document_answers_a_readable_one_or_refuses(
    valid: dict[str, Any], data: st.DataObject, mode: str
) -> None:
    document = data.draw(mutated(valid))
    if isinstance(document, dict):
        with contextlib.suppress(UnicodeEncodeError):
            document = document_seal({k: v for k, v in document.items() if k != "checksum"})
    raw = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
    loaded = _loaded(raw)
    if loaded is None:
        return
    try:
        promoted = promote_document(document=loaded, mode=mode)
    except SnapshotError as exc:
        assert "sk-CANARY" not in str(exc)
        return
    assert document_loads(document_dumps(promoted)) == promoted
    assert b"sk-CANARY" not in document_dumps(promoted)
    with transaction.atomic():
        before = state()
        with contextlib.suppress(SnapshotError, RevealRequired):
            snapshot_restore(document=promoted, dry_run=True)
        assert state() == before
        transaction.set_rollback(True)


@settings(FUZZ, max_examples=max(FUZZ.max_examples // 3, 1))
@given(values=st.lists(st.tuples(TEXT, JSON_VALUE), min_size=1, max_size=2))
def test_a_written_snapshot_loads_back_as_written(
    values: list[tuple[str, Any]], tmp_path_factory: Any
) -> None:
    with transaction.atomic():
        for index, (text, value) in enumerate(values):
            with contextlib.suppress(Exception), transaction.atomic():
                system_config_set(key=f"K{index}", value=text, description=str(value)[:200])
            with contextlib.suppress(Exception), transaction.atomic():
                system_config_set(key=f"J{index}", value=json.dumps(value), value_type="json")
        path = Path(tmp_path_factory.mktemp("snap")) / "node.json"
        written = snapshot_save(path=path)
        assert snapshot_load(source=str(path)) == written
        assert document_loads(document_dumps(written)) == written
        transaction.set_rollback(True)


def _resealed(document: dict[str, Any], model: str, **data: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(document))
    record = next(r for r in copy["records"] if r["model"] == model)
    record["data"].update(data)
    return document_loads(document_dumps(document_seal(copy)))


@pytest.mark.parametrize("url", ["http://[::1", "https://u:sk-CANARY-x@[bad/v1?key=k"])
def test_a_url_that_does_not_parse_is_promoted_blank(valid: dict[str, Any], url: str) -> None:
    """Found by the atheris harness: ``urlsplit`` raised ``ValueError`` (Invalid IPv6 URL) out
    of the promotion for a provider's ``base_url`` it cannot parse."""
    document = _resealed(valid, "providers.aiproviderconfig", base_url=url)
    promoted = promote_document(document=document, mode="full")
    (provider,) = [r for r in promoted["records"] if r["model"] == "providers.aiproviderconfig"]
    assert provider["data"]["base_url"] == ""
    assert b"sk-CANARY" not in document_dumps(promoted)


def test_a_record_whose_data_names_another_key_is_refused_by_promotion(
    valid: dict[str, Any],
) -> None:
    """Promoted, it would be named by its data's key: two such records made a promoted file
    that no node could read (``appears twice``)."""
    document = _resealed(valid, "configsync.systemconfig", key="OTHER")
    with pytest.raises(SnapshotError, match="is not the record's key"):
        promote_document(document=document, mode="full")
