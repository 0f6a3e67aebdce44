"""A page applied as a set (``changes_apply``'s bulk path) and the feed read in one query.

The bulk path writes the model rows of a page with one insert, one update and one delete per
model (``configsync.bulk``) instead of ``save()`` per record. These tests hold it to the
per-record path it replaced: the same page leaves the same state either way (models, feed
rows, conflicts, history, audit, quarantine), a failure leaves nothing of the page, and its
cost in queries does not grow with the page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import DataError, connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configsync import tasks
from configsync.crypto.keyring import Keyring, generate_key, get_keyring, parse_key
from configsync.models import (
    AuditEvent,
    Conflict,
    NodeClock,
    PeerCheckpoint,
    QuarantinedChange,
    RecordVersion,
    ReplicatedRecord,
    SystemConfig,
)
from configsync.replication import registry
from configsync.replication.errors import ChangeValidationError
from configsync.replication.hlc import HLC, physical_now_ms
from configsync.replication.selectors.feed import feed_page
from configsync.replication.services import apply as apply_module
from configsync.replication.services import wire
from configsync.replication.services.apply import changes_apply
from configsync.replication.services.wire import ItemResult
from configsync.signals import AppliedChange, changes_applied
from tests.factories import PeerFactory
from tests.replication.test_push_property import system_items
from tests.support.replication import OTHER, REMOTE, config_data, remote_change

pytestmark = pytest.mark.django_db

LABEL = "configsync.systemconfig"
WALL = physical_now_ms() - 60_000
"""Every stamp of these tests is fixed relative to this instant, so two runs compare equal."""


def at(node: str, offset: int) -> str:
    return str(HLC(WALL + offset, 0, node))


def apply(changes: list[dict[str, Any]], source: str = REMOTE, **kwargs: Any) -> list[ItemResult]:
    return changes_apply(changes=changes, source_node=source, source_name="peer", **kwargs)


def foreign_token(key: str, value: str) -> str:
    """A value sealed with a key this node's keyring lacks."""
    other = Keyring([parse_key(generate_key())])
    return other.encrypt(value, context=f"{LABEL}.secret_value:{key}")


def sealed(key: str, value: str) -> dict[str, Any]:
    token = get_keyring().encrypt(value, context=f"{LABEL}.secret_value:{key}")
    return config_data(key, "", secret_value=token, is_sensitive=True)


Page = tuple[list[dict[str, Any]], str, list[str]]


def mixed_pages(canary: str) -> list[Page]:
    """Pages exercising every outcome, each with its source and the statuses it must get."""
    return list(_mixed_pages(canary))


def _mixed_pages(canary: str) -> Iterator[Page]:
    # What this node holds first, from another node.
    base = [
        remote_change(key, "old", node=OTHER, hlc=at(OTHER, 0))
        for key in ("UPD", "DEL", "WIN", "LOSE", "SAME")
    ]
    yield base, OTHER, ["applied"] * 5
    seen = {OTHER: at(OTHER, 0)}
    dup = remote_change("DUP", "first", hlc=at(REMOTE, 10))
    page = [
        remote_change("NEW", "created", hlc=at(REMOTE, 10)),
        remote_change("SECRET", data=sealed("SECRET", canary), hlc=at(REMOTE, 10)),
        remote_change(
            "FOREIGN",
            data=config_data(
                "FOREIGN", "", secret_value=foreign_token("FOREIGN", canary), is_sensitive=True
            ),
            hlc=at(REMOTE, 10),
        ),
        remote_change("UPD", "new", hlc=at(REMOTE, 10), vv={**seen, REMOTE: at(REMOTE, 10)}),
        remote_change("DEL", deleted=True, hlc=at(REMOTE, 10), vv={**seen, REMOTE: at(REMOTE, 10)}),
        remote_change("GHOST", deleted=True, hlc=at(REMOTE, 10)),  # a tombstone of nothing here
        remote_change("WIN", "remote wins", hlc=at(REMOTE, 20)),  # concurrent, later
        remote_change("LOSE", "remote loses", hlc=str(HLC(WALL - 10, 0, REMOTE))),  # earlier
        remote_change("SAME", "old", node=OTHER, hlc=at(OTHER, 0)),  # already here: stale
        dup,
        {**dup, "data": config_data("DUP", "second")},  # the same record twice in one page
        remote_change("BAD", data=config_data("BAD", "x", value_type="int")),  # refused
    ]
    yield (
        page,
        REMOTE,
        [
            *["applied"] * 6,
            "conflict",
            "conflict",
            "stale",
            "applied",
            "quarantined",
            "quarantined",
        ],
    )
    # Across pages: a newer version of a record created by the previous page, DUP again (now
    # a successor), and a record deleted then created again.
    later = {REMOTE: at(REMOTE, 30)}
    yield (
        [
            remote_change("NEW", "updated", hlc=at(REMOTE, 30), vv=later),
            remote_change("DUP", "again", hlc=at(REMOTE, 30), vv=later),
            remote_change("DEL", "back", hlc=at(REMOTE, 30), vv={**seen, **later}),
        ],
        REMOTE,
        ["applied"] * 3,
    )


def state() -> dict[str, Any]:
    """Everything a page may write, without ids and local times."""
    return {
        "models": sorted(
            SystemConfig.objects.values_list(
                "key", "value_type", "value", "secret_value", "is_sensitive", "category"
            )
        ),
        "records": sorted(
            (
                *(r.natural_key, r.hlc, r.origin_node, r.version_vector, r.deleted, r.data),
                *(r.seq, r.received_from, r.unreadable),
            )
            for r in ReplicatedRecord.objects.all()
        ),
        "conflicts": sorted(
            (c.natural_key, c.local_version["hlc"], c.remote_version["hlc"], c.winner, c.source)
            for c in Conflict.objects.all()
        ),
        "versions": sorted(
            RecordVersion.objects.values_list(
                "natural_key", "number", "hlc", "origin_node", "deleted", "actor", "via"
            )
        ),
        "version_data": sorted(
            (v.natural_key, v.number, v.data) for v in RecordVersion.objects.all()
        ),
        "audit": sorted(
            (
                *(e.natural_key, e.action, e.actor, e.via, e.origin_node, e.hlc, e.node_id),
                *(e.changed_fields, sorted(e.value_hashes.items()), sorted(e.details.items())),
            )
            for e in AuditEvent.objects.filter(model_label=LABEL)
        ),
        "quarantine": sorted(QuarantinedChange.objects.values_list("model_label", "reason")),
    }


def run(pages: list[Page]) -> tuple[dict[str, Any], int]:
    """Apply ``pages``; the state they leave and how many statements inserted settings."""
    with CaptureQueriesContext(connection) as queries:
        for page, source, statuses in pages:
            assert [r.status for r in apply(page, source)] == statuses
    inserts = [
        q["sql"]
        for q in queries.captured_queries
        if 'INTO "configsync_systemconfig"' in q["sql"]
        or 'COPY "configsync_systemconfig"' in q["sql"]
    ]
    return state(), len(inserts)


def forget_everything() -> None:
    for model in (SystemConfig, ReplicatedRecord, Conflict, RecordVersion, AuditEvent):
        model.objects.all().delete()
    QuarantinedChange.objects.all().delete()
    NodeClock.objects.all().delete()


def _watch(sender: Any, **kwargs: Any) -> None:
    """A receiver outside configsync: its model's received versions go through ``save()``."""
    _watch.saved.append(kwargs["instance"].key)  # type: ignore[attr-defined]


_watch.saved = []  # type: ignore[attr-defined]


@pytest.fixture
def watched() -> Iterator[list[str]]:
    _watch.saved = []  # type: ignore[attr-defined]
    post_save.connect(_watch, sender=SystemConfig, dispatch_uid="test-bulk-watch")
    try:
        yield _watch.saved  # type: ignore[attr-defined]
    finally:
        post_save.disconnect(dispatch_uid="test-bulk-watch", sender=SystemConfig)


def test_set_writable_models_are_the_plain_ones() -> None:
    writable = {rm.label: rm.set_writable for rm in registry.all_registered()}
    assert writable[LABEL] is True
    assert writable["testapp.project"] is True
    # Relations, a sensitive field, a before-apply hook and a one-default constraint: per record.
    assert writable["auth.user"] is False
    assert writable["auth.group"] is False
    assert writable["providers.aiproviderconfig"] is False


def test_a_mixed_page_leaves_the_state_the_per_record_path_leaves(
    canary: str, watched: list[str]
) -> None:
    """Creates, updates, deletes, conflicts both ways, stale, unreadable ciphertext, a record
    twice in one page and across pages: the set-wise writes and ``save()`` per record agree."""
    pages = mixed_pages(canary)
    post_save.disconnect(dispatch_uid="test-bulk-watch", sender=SystemConfig)
    by_set, set_inserts = run(pages)
    assert set_inserts == 3  # one statement per page

    forget_everything()
    post_save.connect(_watch, sender=SystemConfig, dispatch_uid="test-bulk-watch")
    by_record, record_inserts = run(pages)
    assert record_inserts == 10  # one per row created (DEL twice)
    first, second, third = ["UPD", "DEL", "WIN", "LOSE", "SAME"], ["NEW", "SECRET"], ["NEW"]
    second += ["FOREIGN", "UPD", "WIN", "DUP"]
    third += ["DUP", "DEL"]
    assert sorted(watched) == sorted([*first, *second, *third])  # every write through save()

    assert by_set == by_record
    models = {key: (value, secret) for key, _, value, secret, *_ in by_set["models"]}
    assert models["NEW"] == ("updated", None) and models["UPD"] == ("new", None)
    assert models["WIN"] == ("remote wins", None) and models["LOSE"] == ("old", None)
    assert models["DEL"] == ("back", None) and models["DUP"] == ("again", None)
    assert "GHOST" not in models and "BAD" not in models
    assert canary not in str(by_set)
    assert SystemConfig.objects.get(key="SECRET").secret_value == canary
    assert ReplicatedRecord.objects.get(natural_key="FOREIGN").unreadable
    assert ReplicatedRecord.objects.get(natural_key="GHOST").deleted
    assert len(by_set["conflicts"]) == 2
    assert [reason for _, reason in by_set["quarantine"]] == [
        "the batch names this record twice",
        "value: Enter a whole number.",
    ]


def test_re_delivering_a_page_is_stale_and_changes_nothing(canary: str) -> None:
    pages = mixed_pages(canary)
    once, _ = run(pages)
    for page, source, _ in pages:
        again = [r.status for r in apply(page, source)]
        assert all(s in ("stale", "quarantined") for s in again), again
    assert {k: v for k, v in state().items() if k != "quarantine"} == {
        k: v for k, v in once.items() if k != "quarantine"
    }


def test_a_crash_after_the_bulk_insert_leaves_nothing_of_the_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception between the rows' insert and the checkpoint (here: in the history write,
    after the model and feed rows went in) rolls the page back whole, checkpoint included; the
    page applies again afterwards."""
    checkpoint = PeerCheckpoint.objects.create(
        peer=PeerFactory(name="cloud"), direction="pull", cursor="before"
    )
    page = [remote_change(f"K{i}", str(i)) for i in range(20)]
    original = apply_module.history_record

    def crash(**kwargs: Any) -> None:
        assert SystemConfig.objects.count() == 20  # the bulk insert happened
        raise RuntimeError("killed")

    monkeypatch.setattr(apply_module, "history_record", crash)
    with pytest.raises(RuntimeError, match="killed"):
        apply(page, checkpoint=(checkpoint.pk, "after"))
    assert not SystemConfig.objects.exists()
    assert not ReplicatedRecord.objects.exists()
    assert not RecordVersion.objects.exists() and not AuditEvent.objects.exists()
    checkpoint.refresh_from_db()
    assert checkpoint.cursor == "before"

    monkeypatch.setattr(apply_module, "history_record", original)
    assert {r.status for r in apply(page, checkpoint=(checkpoint.pk, "after"))} == {"applied"}
    checkpoint.refresh_from_db()
    assert checkpoint.cursor == "after"
    assert SystemConfig.objects.count() == ReplicatedRecord.objects.count() == 20


def test_a_database_error_in_the_bulk_write_retries_the_page_item_by_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The set-wise insert fails once (a DataError no check foresaw): the page is rolled back
    and applied again item by item, each in a savepoint, and nothing is lost or doubled."""
    original = apply_module.rows_insert
    failed: list[int] = []

    def once(**kwargs: Any) -> None:
        if kwargs["model"] is SystemConfig and not failed:
            failed.append(len(kwargs["rows"]))
            raise DataError("value too long")
        original(**kwargs)

    monkeypatch.setattr(apply_module, "rows_insert", once)
    results = apply([remote_change(f"K{i}", str(i)) for i in range(5)])
    assert failed == [5]
    assert [r.status for r in results] == ["applied"] * 5
    assert sorted(SystemConfig.objects.values_list("key", flat=True)) == [f"K{i}" for i in range(5)]
    assert ReplicatedRecord.objects.count() == RecordVersion.objects.count() == 5
    assert not QuarantinedChange.objects.exists()


def page_of(count: int, prefix: str, **kwargs: Any) -> list[dict[str, Any]]:
    return [remote_change(f"{prefix}{i:04d}", str(i), **kwargs) for i in range(count)]


@pytest.mark.parametrize("kind", ["create", "update", "delete"])
def test_a_page_costs_the_same_queries_whatever_its_size(kind: str) -> None:
    apply([remote_change("WARM")])  # the clock row exists from here on
    counts = []
    for count, prefix in ((10, "S"), (200, "L")):
        if kind != "create":
            apply(page_of(count, prefix, hlc=at(REMOTE, 0)))
        page = page_of(count, prefix, hlc=at(REMOTE, 5), deleted=kind == "delete")
        with CaptureQueriesContext(connection) as queries:
            results = apply(page)
        assert {r.status for r in results} == {"applied"}
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 20


def test_the_feed_reads_a_page_in_one_query_and_an_empty_one_too() -> None:
    apply(page_of(5, "A"))
    with CaptureQueriesContext(connection) as small:
        first = feed_page(node="node-local", cursor="", limit=10)
    apply(page_of(200, "B"))
    with CaptureQueriesContext(connection) as large:
        second = feed_page(node="node-local", cursor=first.next_cursor, limit=1000)
    with CaptureQueriesContext(connection) as empty:
        idle = feed_page(node="node-local", cursor=second.next_cursor, limit=1000)
    assert (len(first.changes), len(second.changes), len(idle.changes)) == (5, 200, 0)
    assert len(small.captured_queries) == len(large.captured_queries) == 1
    assert len(empty.captured_queries) == 1
    assert idle.next_cursor == second.next_cursor and not idle.has_more


def test_the_feed_skips_the_requesters_rows_in_sql_and_moves_past_them() -> None:
    apply(page_of(30, "THEIRS"))  # received from REMOTE
    apply([remote_change("MINE", "1", node=OTHER)], source=OTHER)
    page = feed_page(node="node-local", cursor="", limit=10, exclude_node=REMOTE)
    assert [c["key"] for c in page.changes] == ["MINE"]
    assert not page.has_more
    last = ReplicatedRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    assert page.next_cursor.endswith(f".{last}")


def test_losers_are_looked_up_for_records_with_conflicts_only() -> None:
    apply([remote_change("K", "old", node=OTHER, hlc=at(OTHER, 0))], source=OTHER)
    apply([remote_change("K", "new", hlc=at(REMOTE, 10))])  # concurrent: a conflict here
    apply(page_of(50, "P"))
    with CaptureQueriesContext(connection) as queries:
        page = feed_page(node="node-local", cursor="", limit=100, exclude_node="node-x")
    assert len(queries.captured_queries) == 2  # the page, then the one conflicted record's notes
    item = next(c for c in page.changes if c["key"] == "K")
    assert [loser["hlc"] for loser in item["losers"]] == [at(OTHER, 0)]
    assert all(c["losers"] == [] for c in page.changes if c["key"] != "K")


def test_one_batched_notice_per_page_after_commit(
    django_capture_on_commit_callbacks: Any,
) -> None:
    seen: list[list[AppliedChange]] = []

    def listener(sender: Any, changes: list[AppliedChange], **kwargs: Any) -> None:
        seen.append(changes)

    changes_applied.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            apply([remote_change("A", "1"), remote_change("B", deleted=True)])
        assert seen == []  # nothing before commit
        for callback in callbacks:
            callback()
        with django_capture_on_commit_callbacks(execute=True):
            apply([remote_change("A", "1", hlc=at(REMOTE, -50_000))])  # stale: no notice
    finally:
        changes_applied.disconnect(listener)
    seqs = dict(ReplicatedRecord.objects.values_list("natural_key", "seq"))
    assert seen == [
        [AppliedChange(LABEL, "A", seqs["A"], False), AppliedChange(LABEL, "B", seqs["B"], True)]
    ]


def test_an_applied_page_enqueues_one_env_sync_and_its_data_callbacks(
    django_capture_on_commit_callbacks: Any, tmp_path: Any
) -> None:
    from django.core.cache import cache

    cache.delete("configsync:env-sync-pending")
    with (
        override_settings(
            CONFIGSYNC_ENV_FILE=str(tmp_path / "x.env"),
            CONFIGSYNC_DATA_CALLBACK_URL="http://127.0.0.1:9/hook",
        ),
        mock.patch.object(tasks.env_sync, "apply_async") as env_sync,
        mock.patch.object(tasks.notify_data_callback, "delay") as callback,
        django_capture_on_commit_callbacks(execute=True),
    ):
        apply(page_of(3, "E"))
    assert env_sync.call_count == 1
    seqs = dict(ReplicatedRecord.objects.values_list("natural_key", "seq"))
    assert sorted(c.args for c in callback.call_args_list) == [
        (LABEL, key, seqs[key], False) for key in ("E0000", "E0001", "E0002")
    ]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(item=system_items())
def test_compiled_validation_accepts_and_refuses_exactly_like_full_clean(
    item: dict[str, Any],
) -> None:
    """The compiled field checks are a shortcut, never a rule: on any item the validation of
    a received version gives what ``full_clean`` gives (the same acceptance, the same reasons)."""
    bound = wire._Bound.now()

    def check() -> str:
        try:
            change = wire._check_item(item, bound)
        except wire._Refused as refused:
            return "; ".join(refused.reasons)
        return f"ok {change.version.data}"

    fast = check()
    with mock.patch.object(registry, "has_validation_hook", return_value=True):
        ordinary = check()  # the compiled path is off: model() + deserialize_into + full_clean
    assert fast == ordinary


def test_a_batch_validated_ahead_is_validated_again_when_a_setting_changed_since() -> None:
    """``changes_apply(checked=...)`` trusts a check done ahead only for the same list under
    the same settings and validation hooks: a value that became too long meanwhile is
    quarantined as if nothing had been checked ahead."""
    batch = [remote_change("AHEAD_SHORT", "abc"), remote_change("AHEAD_LONG", "x" * 40)]
    checked = wire.changes_precheck(batch)
    assert checked is not None and checked.holds(batch)
    assert not checked.holds(list(batch))
    with override_settings(CONFIGSYNC_MAX_VALUE_BYTES=10):
        assert not checked.holds(batch)
        results = changes_apply(
            changes=batch, source_node=REMOTE, source_name="remote", checked=checked
        )
    assert [r.status for r in results] == [wire.APPLIED, wire.QUARANTINED]
    assert "Longer than 10 bytes" in results[1].reason
    assert list(SystemConfig.objects.filter(key__startswith="AHEAD_").values_list("key")) == [
        ("AHEAD_SHORT",)
    ]


@override_settings(CONFIGSYNC_MAX_PUSH_BATCH=2)
def test_a_batch_refused_whole_is_not_validated_ahead() -> None:
    """A batch over ``MAX_PUSH_BATCH`` has no check ahead: applying it raises and writes
    nothing, as without one."""
    batch = [remote_change(f"WHOLE_{i}") for i in range(3)]
    assert wire.changes_precheck(batch) is None
    with pytest.raises(ChangeValidationError):
        changes_apply(changes=batch, source_node=REMOTE, source_name="remote")
    assert not SystemConfig.objects.filter(key__startswith="WHOLE_").exists()


@given(
    st.dictionaries(
        st.one_of(st.text(max_size=12), st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)),
        st.one_of(
            st.text(max_size=40),
            st.from_regex(r"[0-9]{15}:[0-9]{8}:[a-z]{1,8}", fullmatch=True),
        ),
        max_size=4,
    )
)
def test_a_version_vector_is_written_as_json_encodes_it(vv: dict[str, str]) -> None:
    """The feed row's vector, encoded without ``json.dumps`` when it is plain, is exactly the
    text ``json.dumps`` makes (SQLite stores it as it is)."""
    assert apply_module._vv_text(vv) == json.dumps(vv)
