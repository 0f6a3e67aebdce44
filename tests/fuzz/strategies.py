"""Hypothesis strategies shared by the parser fuzzers: garbage, and near-valid mutations.

Every parser is fed three kinds of input: garbage of its outer type (bytes, text, any JSON),
valid inputs mutated a little (one to three members of a JSON document replaced, removed or
added, or a few bytes of a valid file flipped, cut, repeated or inserted), and hostile text
where text belongs (NUL, lone surrogates, quotes, separators, line breaks, the token prefix).
Sizes are bounded so no example can take long.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
"""``FUZZ_EXAMPLES`` (``make fuzz``): examples per test, drawn anew each run; unset: the
default suite's fixed 60."""
FUZZ = settings(
    max_examples=EXAMPLES or 60,
    deadline=None,
    derandomize=not EXAMPLES,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
"""Every fuzz test's settings: fixed examples by default (CI reproduces them), no timed
assertion."""

HOSTILE_CHARS = [
    "\x00",
    "\ud800",
    "\udfff",
    "é",
    "\u2028",
    "\ufeff",
    "'",
    '"',
    "\\",
    " ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "#",
    "=",
    ":",
    ",",
    ".",
    "$",
    "enc1:",
    "0" * 15,
]
HOSTILE = st.sampled_from(HOSTILE_CHARS)
TEXT = st.one_of(
    st.text(max_size=16),
    st.lists(st.one_of(st.text(max_size=4), HOSTILE), max_size=6).map("".join),
)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    TEXT,
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def json_bytes(value: Any) -> bytes:
    """``value`` as a peer could send it: JSON, NaN allowed, lone surrogates as raw bytes or
    escapes (both are what a hostile sender can put on the wire)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member or item of a JSON value (not the root)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        children: Any = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    else:
        children = []
    for name, child in children:
        found.append((*prefix, name))
        found.extend(_paths(child, (*prefix, name)))
    return found


@st.composite
def mutated(
    draw: st.DrawFn,
    valid: Any,
    *,
    max_changes: int = 3,
    focus: Callable[[tuple[Any, ...]], bool] | None = None,
) -> Any:
    """``valid`` (a JSON value, left untouched) with one to ``max_changes`` members replaced by
    any JSON (often of another type), removed, or added, or a text member changed a little.
    ``focus``: half the time the member changed is one whose path it accepts (when any is)."""
    value = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, max_changes))):
        paths = _paths(value)
        if not paths:
            return draw(JSON_VALUE)
        focused = [p for p in paths if focus(p)] if focus is not None else []
        path = draw(st.sampled_from(focused if focused and draw(st.booleans()) else paths))
        parent: Any = value
        for step in path[:-1]:
            parent = parent[step]
        leaf = parent[path[-1]]
        action = draw(st.sampled_from(["replace", "replace", "tweak", "remove", "add"]))
        if action == "tweak" and isinstance(leaf, str):
            at = draw(st.integers(0, len(leaf)))
            cut = draw(st.integers(0, 3))
            parent[path[-1]] = leaf[:at] + draw(TEXT) + leaf[at + cut :]
        elif action == "tweak" and isinstance(leaf, int) and not isinstance(leaf, bool):
            parent[path[-1]] = leaf + draw(st.sampled_from([-1, 1, 10**15, -(10**15)]))
        elif action in ("replace", "tweak"):
            parent[path[-1]] = draw(JSON_VALUE)
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(TEXT)] = draw(JSON_VALUE)
        else:
            parent.insert(draw(st.integers(0, len(parent))), draw(JSON_VALUE))
    return value


@st.composite
def mutated_bytes(draw: st.DrawFn, valid: bytes, *, max_changes: int = 4) -> bytes:
    """``valid`` with one to ``max_changes`` byte-level changes: a flipped bit, a cut, a
    repeated slice, inserted bytes, or the end cut off."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, max_changes))):
        action = draw(st.sampled_from(["flip", "cut", "repeat", "insert", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if action == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        elif action == "insert":
            data[at:at] = draw(
                st.one_of(st.binary(min_size=1, max_size=8), HOSTILE.map(_surrogate_bytes))
            )
        else:
            del data[at:]
    return bytes(data)


def _surrogate_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
