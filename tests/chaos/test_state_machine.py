"""Model-based test: nodes in one process, driven by Hypothesis, checked against the model.

Three nodes (``tests/support/inprocess.py``: each its own database, settings and clock) take
random steps: writes and deletes of plain and sensitive settings and of users, sync cycles between
two nodes through the real HTTP transport and peer views (full-duplex, pull only, push only),
partitions and heals of a pair's link, a crash mid-batch (a statement of the receiving node's
apply fails: the process dies, or the database drops the connection once) and per-node clock
skew up to ±10 minutes. After every step each node must be consistent with itself (a record's
replication row and its model row agree). ``converge`` (a step, and the end of every run) heals
every link, lets time pass until no clock is behind the furthest-ahead one, runs the beat's
quarantine retry and full cycles between every pair until nothing moves; then every node must
hold the same records (timestamps, tombstones, wire forms byte for byte), equal to
``tests/chaos/model.py``'s ``expected_state`` of the recorded history, with nothing left in
quarantine.

A failure prints the steps (Hypothesis' falsifying example), the ``@reproduce_failure`` blob and
the seed. ``make test`` runs 6 examples of 25 steps with a fixed seed (the same examples every
time, and the test checks they met every fault); a long run sets ``CHAOS_EXAMPLES`` (40 steps
each, a random seed unless ``CHAOS_SEED`` fixes it), and then shrinks a failure.
``test_a_broken_merge_rule_is_caught`` proves the machine can fail: with
``CONFIGSYNC_TEST_MERGE_RULE=broken`` on one node, a run with a fixed seed must fail.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS, connections
from hypothesis import HealthCheck, Phase, event, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from configsync.models import QuarantinedChange, ReplicatedRecord, SystemConfig
from configsync.replication.services.cycle import SyncCycleError, sync_cycle
from configsync.replication.services.peers import peer_seed_from_settings
from configsync.replication.services.quarantine import quarantine_retry
from configsync.services.system_config import system_config_delete, system_config_set
from tests.chaos.model import Key, Op, digest, expected_state
from tests.support.inprocess import (
    SIGNATURE_WINDOW_SECONDS,
    InProcessGroup,
    InProcessNode,
    NodeCrash,
    NodeDatabases,
)

pytestmark = pytest.mark.chaos

NODES = ("n0", "n1", "n2")
PAIRS = tuple((a, b) for a in NODES for b in NODES if a != b)
CONFIG = "configsync.systemconfig"
USER = "auth.user"
SETTINGS_KEYS = {"SITE_NAME": False, "FEATURE_FLAG": False, "PAYMENT_API_TOKEN": True}
"""The settings the runs write, and whether each is sensitive."""
USERNAMES = ("alice", "bob")
SKEWS_MS = (-600_000, -30_000, 0, 0, 1, 30_000, 600_000)
"""Clock offsets a node may take: up to ten minutes either way (the skew bound is 60 s)."""
APPLY_STEP = r'^UPDATE "configsync_nodeclock"'
"""A statement of ``changes_apply`` after a page's model and replication rows are written and
before it commits (the clock's update): a fault there is a fault mid-page."""

EXAMPLES = int(os.environ.get("CHAOS_EXAMPLES", "0") or 0)
CHAOS_SEED = os.environ.get("CHAOS_SEED", "")


SEEN: Counter[str] = Counter()
"""What the runs of the current test exercised (each also a Hypothesis ``event``)."""


def _seen(what: str) -> None:
    SEEN[what] += 1
    event(what)


def _state_of(node: InProcessNode) -> dict[Key, str]:
    """The node's live records of the runs' keys, as values (secrets decrypted)."""
    with node.active():
        state: dict[Key, str] = {}
        for config in SystemConfig.objects.filter(key__in=list(SETTINGS_KEYS)):
            value = config.secret_value if config.is_sensitive else config.value
            state[(CONFIG, config.key)] = str(value)
        for user in User.objects.filter(username__in=USERNAMES):
            state[(USER, user.username)] = user.email
        return state


def _records_of(node: InProcessNode) -> dict[Key, tuple[str, bool, Any]]:
    """The node's replication rows of the runs' keys: timestamp, tombstone, wire form."""
    with node.active():
        return {
            (r.model_label, r.natural_key): (r.hlc, r.deleted, r.data)
            for r in ReplicatedRecord.objects.filter(
                model_label__in=[CONFIG, USER],
                natural_key__in=[*SETTINGS_KEYS, *USERNAMES],
            )
        }


class ReplicationMachine(RuleBasedStateMachine):
    """The nodes, the recorded history and the rules. Configured per test by :func:`machine`."""

    databases: ClassVar[NodeDatabases]
    merge_rules: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Op] = []
        self.written = 0
        self.max_offset_ms = 0
        nodes = {
            name: InProcessNode(
                name=name,
                database=self.databases.fresh(name),
                peers=[p for p in NODES if p != name],
                merge_rule=self.merge_rules.get(name, ""),
            )
            for name in NODES
        }
        self.group = InProcessGroup(nodes)
        self.peer_ids: dict[tuple[str, str], int] = {}
        for name, node in nodes.items():
            with node.active():
                for peer in peer_seed_from_settings():
                    self.peer_ids[(name, peer.name)] = peer.pk

    def teardown(self) -> None:
        try:
            self._converge()
        finally:
            self.group.close()

    # --- local writes ------------------------------------------------------------------------

    def _record(self, node: str, key: Key, value: str | None, before: str | None) -> None:
        """Record the operation with the timestamp the node gave it (none: no new version)."""
        with self.group.nodes[node].active():
            row = ReplicatedRecord.objects.filter(model_label=key[0], natural_key=key[1]).first()
        if row is not None and row.hlc != before:
            self.ops.append(Op(node=node, model=key[0], key=key[1], value=value, hlc=row.hlc))

    def _hlc(self, node: str, key: Key) -> str | None:
        with self.group.nodes[node].active():
            row = ReplicatedRecord.objects.filter(model_label=key[0], natural_key=key[1]).first()
        return None if row is None else row.hlc

    def _next_value(self, prefix: str) -> str:
        self.written += 1
        return f"{prefix}-{self.written}"

    @rule(node=st.sampled_from(NODES), key=st.sampled_from(sorted(SETTINGS_KEYS)))
    def write_setting(self, node: str, key: str) -> None:
        sensitive = SETTINGS_KEYS[key]
        value = self._next_value("sk-CANARY-statem" if sensitive else "value")
        before = self._hlc(node, (CONFIG, key))
        with self.group.nodes[node].active():
            system_config_set(key=key, value=value, is_sensitive=sensitive)
        self._record(node, (CONFIG, key), value, before)

    @rule(node=st.sampled_from(NODES), key=st.sampled_from(sorted(SETTINGS_KEYS)))
    def delete_setting(self, node: str, key: str) -> None:
        before = self._hlc(node, (CONFIG, key))
        with self.group.nodes[node].active():
            if not SystemConfig.objects.filter(key=key).exists():
                return
            system_config_delete(key=key)
        self._record(node, (CONFIG, key), None, before)

    @rule(node=st.sampled_from(NODES), username=st.sampled_from(USERNAMES))
    def write_user(self, node: str, username: str) -> None:
        email = self._next_value(username) + "@example.test"
        before = self._hlc(node, (USER, username))
        with self.group.nodes[node].active():
            user = User.objects.filter(username=username).first() or User(username=username)
            user.email = email
            user.set_password(f"sk-CANARY-statem-password-{self.written}")
            user.save()
        self._record(node, (USER, username), email, before)

    @rule(node=st.sampled_from(NODES), username=st.sampled_from(USERNAMES))
    def delete_user(self, node: str, username: str) -> None:
        before = self._hlc(node, (USER, username))
        with self.group.nodes[node].active():
            user = User.objects.filter(username=username).first()
            if user is None:
                return
            user.delete()
        self._record(node, (USER, username), None, before)

    # --- sync, partitions, faults, clocks ----------------------------------------------------

    def _cycle(self, a: str, b: str, *, pull: bool = True, push: bool = True) -> bool:
        """One cycle of ``a`` with its peer ``b``; whether it succeeded."""
        with self.group.nodes[a].active():
            try:
                result = sync_cycle(
                    peer_id=self.peer_ids[(a, b)],
                    pull=pull,
                    push=push,
                    transport=self.group.transport(a, b),
                )
            except SyncCycleError:
                _seen("a cycle failed")
                return False
        for what in ("conflicts", "held_for_skew", "restarted"):
            if getattr(result, what):
                _seen(f"a cycle met {what}")
        return True

    def _talk(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` can talk: linked, and their clocks close enough that each
        accepts the other's signatures (``SIGNATURE_WINDOW_SECONDS``)."""
        window_ms = SIGNATURE_WINDOW_SECONDS * 1000
        offsets = self.group.nodes[a].offset_ms, self.group.nodes[b].offset_ms
        return self.group.linked(a, b) and abs(offsets[0] - offsets[1]) <= window_ms

    @rule(pair=st.sampled_from(PAIRS), direction=st.sampled_from(("both", "pull", "push")))
    def sync(self, pair: tuple[str, str], direction: str) -> None:
        a, b = pair
        sent = self.group.requests
        ok = self._cycle(a, b, pull=direction != "push", push=direction != "pull")
        # A cycle over a working link between healthy nodes succeeds; over a cut one it fails,
        # unless it had nothing to send (a push-only cycle with nothing new asks nothing).
        linked = self._talk(a, b)
        assert ok == (linked or self.group.requests == sent), f"cycle {a}->{b} ({direction})"

    @rule(pair=st.sampled_from(PAIRS))
    def partition(self, pair: tuple[str, str]) -> None:
        self.group.cut(*pair)

    @rule()
    def heal(self) -> None:
        self.group.heal()

    @rule(
        pair=st.sampled_from(PAIRS),
        receiver_pulls=st.booleans(),
        kind=st.sampled_from(("crash", "transient")),
    )
    def crash_mid_batch(self, pair: tuple[str, str], receiver_pulls: bool, kind: str) -> None:
        """``a`` syncs with ``b`` while the side applying a page fails mid-page: ``a`` pulling,
        or ``b`` receiving ``a``'s push. A crash rolls the page back whole (the node's records
        are as before it; a crashed peer stays down for the sender's re-send) and the next cycle
        retries it; a transient error is retried at once, so the cycle succeeds."""
        a, b = pair
        receiver = self.group.nodes[a if receiver_pulls else b]
        before = _records_of(receiver)
        with receiver.fault_on(APPLY_STEP, kind=kind) as fault:
            try:
                ok = self._cycle(a, b, pull=receiver_pulls, push=not receiver_pulls)
            except NodeCrash:
                ok = False
        receiver.down = False  # restarted
        if not fault.fired:
            return  # nothing to apply: nothing failed
        _seen(f"a {kind} fault fired mid-page")
        if kind == "crash":
            assert not ok
            assert _records_of(receiver) == before, "a crashed page left part of itself"
        else:
            assert ok == self._talk(a, b), "a transient database error failed the cycle"

    @rule(node=st.sampled_from(NODES), offset=st.sampled_from(SKEWS_MS))
    def skew(self, node: str, offset: int) -> None:
        self.group.nodes[node].offset_ms = offset
        self.max_offset_ms = max(self.max_offset_ms, offset)

    @precondition(lambda self: len(self.ops) > 0)
    @rule()
    def converge(self) -> None:
        self._converge()

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def each_node_agrees_with_itself(self) -> None:
        """A record's replication row and its model row agree on every node, whatever failed."""
        for name, node in self.group.nodes.items():
            records = _records_of(node)
            state = _state_of(node)
            live = {key for key, (_, deleted, _) in records.items() if not deleted}
            assert live == set(state), f"{name}: live records {live} != model rows {set(state)}"

    def _converge(self) -> None:
        """Heal, let time pass, retry the quarantine, sync every pair until nothing moves; then
        every node holds the same records, equal to the model's."""
        self.group.heal()
        for node in self.group.nodes.values():
            # Time passes until no clock is behind the furthest-ahead one any run has had: every
            # change held for clock skew is now within the bound.
            node.offset_ms = self.max_offset_ms
        previous: list[Any] = []
        for _ in range(8):
            for node in self.group.nodes.values():
                with node.active():
                    quarantine_retry()
            for a, b in (("n0", "n1"), ("n1", "n2"), ("n2", "n0")):
                assert self._cycle(a, b), f"a cycle {a}<->{b} failed after the heal"
            seen = [_records_of(node) for node in self.group.nodes.values()]
            if seen == previous and all(s == seen[0] for s in seen):
                break
            previous = seen
        self._check_converged()

    def _check_converged(self) -> None:
        records = {name: _records_of(node) for name, node in self.group.nodes.items()}
        first = records[NODES[0]]
        for name, held in records.items():
            differ = sorted(k for k in set(first) | set(held) if first.get(k) != held.get(k))
            assert not differ, f"{NODES[0]} and {name} differ on {differ}"
        expectation = expected_state(self.ops)
        for name, node in self.group.nodes.items():
            state = _state_of(node)
            problems = expectation.check(state)
            assert not problems, (
                f"{name} (digest {digest(state)[:12]}) breaks the model "
                f"(digest {digest(dict(expectation.state))[:12]}): {problems}; "
                f"history: {self.ops}"
            )
            with node.active():
                held = QuarantinedChange.objects.filter(status=QuarantinedChange.Status.OPEN)
                assert not held.exists(), f"{name} still holds {held.count()} quarantined"


def machine(databases: NodeDatabases, merge_rules: dict[str, str] | None = None) -> type:
    """The machine on these databases, with these nodes' ``CONFIGSYNC_TEST_MERGE_RULE``."""
    return type(
        "ReplicationMachine",
        (ReplicationMachine,),
        {"databases": databases, "merge_rules": dict(merge_rules or {})},
    )


@pytest.fixture(scope="module")
def node_databases(
    tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any
) -> Iterator[NodeDatabases]:
    """Fresh migrated databases for the nodes, on the backend the suite runs on."""
    base = dict(connections.settings[DEFAULT_DB_ALIAS])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    # PostgreSQL: beside the suite's database, per worker. SQLite: files in a temporary folder
    # (never derived from NAME, which is a URI for pytest-django's in-memory test database).
    server = re.sub(r"\W", "_", str(base["NAME"])) if "postgresql" in base["ENGINE"] else "cs"
    prefix = f"{server}_statem_{worker}"
    with django_db_blocker.unblock():
        databases = NodeDatabases(
            base=base, directory=tmp_path_factory.mktemp("statem"), prefix=prefix
        )
        try:
            yield databases
        finally:
            databases.drop_all()


DEFAULT_SEED = 4
"""The seed of the short run every ``make test`` makes (the same examples every time), one whose
six examples meet every fault (the test checks it: a change of the rules may need a new seed)."""
BROKEN_RULE_SEED = 6
"""The seed with which the broken merge rule must be caught."""


def run_machine(machine_class: type, *, seed_value: int, **chosen: Any) -> None:
    """Run the machine with a fixed seed; a failure's notes say how to run it again."""
    options: dict[str, Any] = {
        "max_examples": EXAMPLES or 6,
        "stateful_step_count": 40 if EXAMPLES else 25,
        "deadline": None,
        "database": None,
        "print_blob": True,
        "suppress_health_check": list(HealthCheck),
    }
    options.update(chosen)
    try:
        run_state_machine_as_test(seed(seed_value)(machine_class), settings=settings(**options))
    except BaseException as exc:
        exc.add_note(
            f"Run it again: CHAOS_SEED={seed_value} CHAOS_EXAMPLES={options['max_examples']} "
            f"pytest {__file__}"
        )
        raise


def test_the_nodes_converge_on_the_model(node_databases: NodeDatabases) -> None:
    # ``CHAOS_SEED`` is the harness's list (``1,2,3`` or ``random``): this test takes the first.
    first = CHAOS_SEED.split(",")[0].strip()
    if first and first != "random":
        chosen = int(first)
    else:
        chosen = random.randrange(2**32) if EXAMPLES else DEFAULT_SEED
    SEEN.clear()
    run_machine(machine(node_databases), seed_value=chosen)
    print(f"exercised: {dict(SEEN)}")
    if not EXAMPLES:
        # The short run is worth its time only if it met every fault it is there for.
        assert set(SEEN) >= {
            "a cycle failed",
            "a cycle met conflicts",
            "a cycle met held_for_skew",
            "a crash fault fired mid-page",
            "a transient fault fired mid-page",
        }, SEEN


def test_a_broken_merge_rule_is_caught(node_databases: NodeDatabases) -> None:
    """With ``CONFIGSYNC_TEST_MERGE_RULE=broken`` on one node (it keeps its own version in every
    conflict), the machine finds a run whose nodes break the model, and says how to replay it."""
    with pytest.raises(AssertionError) as caught:
        run_machine(
            machine(node_databases, {"n1": "broken"}),
            seed_value=BROKEN_RULE_SEED,
            max_examples=30,
            phases=[Phase.generate],
        )
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "breaks the model" in str(caught.value) or "differ on" in str(caught.value)
    assert "state = ReplicationMachine()" in notes  # the falsifying steps
    assert "reproduce_failure" in notes  # and the blob that replays them
    assert f"CHAOS_SEED={BROKEN_RULE_SEED}" in notes
