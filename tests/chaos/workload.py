"""The workload of a chaos run and its recorded history.

:class:`Workload` makes random writes and deletes, on every node, of plain and sensitive settings
(REST, as an admin) and of users (``manage.py shell``, as an operator's script would), and records
each as a :class:`tests.chaos.model.Op` with the hybrid-logical-clock timestamp the node gave it,
read back from the node's own history (``configsync_recordversion``: the newest version of the
record that this node originated, which is the write just made, since the workload writes to a
node one operation at a time). A write whose answer never came (the web process was killed
under it, a connection reset) is recorded ``acked=False`` and resolved after the run from the
same history: found, it committed; absent, it never happened. REST writes go through the node's
client link of the proxy when one is given (``clients``): when that link withheld a 2xx answer
(``lose_ack``), the write is known committed though the writer saw a failure, and is recorded
``acked=False, committed=True`` with the timestamp it got.

Values encode the sensitivity (``S:`` or ``P:`` before the text), so the state compared is what
an operator sees: the key, its value, and whether it is a secret.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from multinode import Node
from tests.chaos.model import Expectation, Key, Op, digest
from tests.chaos.proxy import Link

SETTING = "configsync.systemconfig"
USER = "auth.user"
SETTING_PREFIX = "CHAOS_"
USER_PREFIX = "chaos-"


def _dump_code(setting_prefix: str, user_prefix: str) -> str:
    return (
        "import json\n"
        "from django.contrib.auth import get_user_model\n"
        "from configsync.models import SystemConfig\n"
        "state = {}\n"
        f"for row in SystemConfig.objects.filter(key__startswith={setting_prefix!r}):\n"
        "    value = ('S:' if row.is_sensitive else 'P:') + row.raw_value()\n"
        f"    state[{SETTING!r} + '|' + row.key] = value\n"
        f"for user in get_user_model().objects.filter(username__startswith={user_prefix!r}):\n"
        f"    state[{USER!r} + '|' + user.username] = user.email\n"
        "print(json.dumps(state))\n"
    )


def node_state(node: Node, *, setting_prefix: str, user_prefix: str) -> dict[Key, str]:
    """The live records of one workload on ``node`` (decrypted, as the model states them)."""
    out = node.shell(_dump_code(setting_prefix, user_prefix), timeout=120)
    raw: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return {(k.split("|", 1)[0], k.split("|", 1)[1]): v for k, v in raw.items()}


def own_versions(node: Node, record: Key) -> list[str]:
    """The HLCs of ``record``'s versions that ``node`` originated, newest first."""
    rows = node.sql(
        "SELECT hlc FROM configsync_recordversion WHERE model_label = %s AND natural_key = %s"
        " AND origin_node = %s ORDER BY number DESC",
        [record[0], record[1], node.node_id],
    )
    return [str(row[0]) for row in rows]


@dataclass
class History:
    """Every operation of a run, in the order the workload made them, and the events around."""

    seed: int
    ops: list[Op] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    started: float = field(default_factory=time.monotonic)

    def note(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.events.append(f"[op {len(self.ops)}, {elapsed:.1f}s] {text}")

    def expectation(self) -> Expectation:
        from tests.chaos.model import expected_state

        return expected_state(self.ops)

    def text(self) -> str:
        lines = [f"seed {self.seed}: {len(self.ops)} operations"]
        lines += [f"  {e}" for e in self.events]
        for index, op in enumerate(self.ops):
            flags = ("" if op.accepted else " REFUSED") + ("" if op.acked else " UNACKED")
            flags += (" COMMITTED(ack lost)" if op.committed else "") + (
                " HELD-FOR-SKEW" if op.held_for_skew else ""
            )
            lines.append(
                f"  #{index} {op.node} {op.model} {op.key} = {op.value!r} @ {op.hlc}{flags}"
            )
        return "\n".join(lines)


class Workload:
    """Random operations on a cluster's nodes, recorded in :attr:`history`."""

    def __init__(
        self,
        nodes: dict[str, Node],
        *,
        seed: int,
        settings: int = 6,
        users: int = 2,
        clients: dict[str, Link] | None = None,
    ):
        """``clients``: the proxy link in front of each node's web server that REST writes take
        (none: straight to the node)."""
        self.nodes = nodes
        self.clients = dict(clients or {})
        self.rng = random.Random(seed)
        self.history = History(seed=seed)
        self.setting_prefix = f"{SETTING_PREFIX}{seed}_"
        self.user_prefix = f"{USER_PREFIX}{seed}-"
        self.settings = [f"{self.setting_prefix}{i}" for i in range(settings)]
        self.users = [f"{self.user_prefix}{i}" for i in range(users)]
        self.filler = f"{self.setting_prefix}FILLER"
        self.counter = 0

    # --- one operation ------------------------------------------------------------------------

    def step(
        self,
        node_name: str | None = None,
        *,
        key: str | None = None,
        delete: bool | None = None,
        filler: bool = False,
        timeout: float = 15.0,
    ) -> Op:
        """One operation on ``node_name`` (random when ``None``), recorded: random unless
        ``key`` (a setting) or ``delete`` say; ``filler`` writes the run's filler setting (to
        move a node's clock on by one tick)."""
        name = node_name or self.rng.choice(sorted(self.nodes))
        node = self.nodes[name]
        self.counter += 1
        if delete is None:
            delete = self.rng.random() < 0.25
        if filler:
            key, delete = self.filler, False
        if key is None and self.rng.random() < 0.2:
            user = self.rng.choice(self.users)
            value = None if delete else f"{user}.{self.history.seed}.{self.counter}@example.invalid"
            op = self._user(node, user, value)
        else:
            key = key or self.rng.choice(self.settings)
            sensitive = self.rng.random() < 0.5
            text = f"sk-CANARY-{self.counter}" if sensitive else f"plain-{self.counter}"
            op = self._setting(node, key, None if delete else text, sensitive, timeout=timeout)
        self.history.ops.append(op)
        return op

    def _setting(
        self, node: Node, key: str, text: str | None, sensitive: bool, *, timeout: float
    ) -> Op:
        record = (SETTING, key)
        before = set(own_versions(node, record))
        value = None if text is None else ("S:" if sensitive else "P:") + text
        path = f"/api/v1/configs/system/{key}/"
        client = self.clients.get(node.name)
        base = client.url if client is not None else node.base_url
        lost = client.lost_acks if client is not None else 0
        try:
            if text is None:
                response = node.session().delete(base + path, timeout=timeout)
            else:
                body = {"key": key, "value": text, "value_type": "str", "is_sensitive": sensitive}
                response = node.session().put(base + path, json=body, timeout=timeout)
        except requests.RequestException:
            return self._unacked(node, record, value, before, lost)
        if response.status_code >= 500:
            raise AssertionError(f"node {node.name}: {response.status_code} on {path}")
        if response.status_code == 404 and text is None:
            return Op(node.name, SETTING, key, None, None, accepted=False)
        if response.status_code == 404:  # PUT of a key that does not exist yet: create it
            try:
                response = node.session().post(
                    base + "/api/v1/configs/system/", json=body, timeout=timeout
                )
            except requests.RequestException:
                return self._unacked(node, record, value, before, lost)
        if response.status_code >= 400:
            raise AssertionError(
                f"node {node.name}: {response.status_code} {response.text[:300]} on {path}"
            )
        return self._stamped(node, record, value, before)

    def _user(self, node: Node, username: str, email: str | None) -> Op:
        record = (USER, username)
        before = set(own_versions(node, record))
        if email is None:
            code = (
                "from django.contrib.auth import get_user_model\n"
                f"n, _ = get_user_model().objects.filter(username={username!r}).delete()\n"
                "print('deleted' if n else 'absent')\n"
            )
        else:
            code = (
                "from django.contrib.auth import get_user_model\n"
                "get_user_model().objects.update_or_create(\n"
                f"    username={username!r}, defaults={{'email': {email!r}}})\n"
                "print('saved')\n"
            )
        result = node.manage("shell", "-c", code, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"node {node.name}: user write failed: {result.stderr[-500:]}")
        if "absent" in result.stdout:
            return Op(node.name, USER, username, None, None, accepted=False)
        return self._stamped(node, record, email, before)

    def _unacked(
        self, node: Node, record: Key, value: str | None, before: set[str], lost: int
    ) -> Op:
        """The operation of a request that failed: committed for sure (with its timestamp) when
        the node's client link withheld a 2xx since ``lost`` was read, else not known."""
        client = self.clients.get(node.name)
        if client is not None and client.lost_acks > lost:
            op = self._stamped(node, record, value, before)
            return replace(op, acked=False, committed=True)
        return Op(node.name, record[0], record[1], value, None, acked=False)

    def _stamped(self, node: Node, record: Key, value: str | None, before: set[str]) -> Op:
        fresh = [hlc for hlc in own_versions(node, record) if hlc not in before]
        if len(fresh) != 1:
            raise AssertionError(
                f"node {node.name}: {record} acknowledged, but {len(fresh)} new own versions"
            )
        return Op(node.name, record[0], record[1], value, fresh[0])

    # --- after the run ------------------------------------------------------------------------

    def resolve_unacked(self) -> None:
        """Give each unacknowledged operation the HLC it committed with, if it did (a version of
        its node's origin no other operation claims); one that never committed keeps none."""
        claimed = {op.hlc for op in self.history.ops if op.hlc}
        for index, op in enumerate(self.history.ops):
            if op.sure or op.hlc is not None:
                continue
            node = self.nodes[op.node]
            unclaimed = [h for h in own_versions(node, op.record) if h not in claimed]
            if len(unclaimed) > 1:
                raise AssertionError(f"{op}: {len(unclaimed)} unclaimed versions {unclaimed}")
            if unclaimed:
                claimed.add(unclaimed[0])
                self.history.ops[index] = replace(op, hlc=unclaimed[0], acked=True)
                self.history.note(f"unacknowledged #{index} committed as {unclaimed[0]}")
            else:
                self.history.note(f"unacknowledged #{index} never committed")

    def states(self) -> dict[str, dict[Key, str]]:
        """Every node's live records of this workload, by node name."""
        return {
            name: node_state(node, setting_prefix=self.setting_prefix, user_prefix=self.user_prefix)
            for name, node in sorted(self.nodes.items())
        }


def digests(found: dict[str, dict[Key, Any]]) -> dict[str, str]:
    return {name: digest(state) for name, state in found.items()}
