"""The goals table ``make bench`` prints at the end (issue 14's figures, one row per goal).

Each benchmark module measures its figures *and* the floor or peer it is judged against in the
same run, then calls :func:`goal` once per row. ``python -m bench`` prints every row again as one
table after all modules ran, so the verdicts of a long run sit together at the bottom.

A row is a judgement, not an assertion: ``met`` is computed by the module from its own same-run
figures (e.g. ``records_per_s >= 0.5 * copy_floor``), and nothing fails when a goal is missed —
the table says so, and ``docs/benchmarks.md`` records why (the floor that stops it and the
profile that shows it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    area: str
    """The benchmark module (``replication``, ``push``, ``rest`` …)."""
    what: str
    """The measured figure, e.g. ``first sync 10,000 records (PostgreSQL)``."""
    measured: str
    """The figure as printed, with its unit: ``23,400 records/s``."""
    target: str
    """The goal as printed, with the same-run floor: ``>= 20,000/s and >= 0.5x COPY (31,000/s)``."""
    met: bool


_GOALS: list[Goal] = []


def goal(*, area: str, what: str, measured: str, target: str, met: bool) -> Goal:
    """Record one row of the goals table and print it at once (so a long run shows progress)."""
    row = Goal(area=area, what=what, measured=measured, target=target, met=met)
    _GOALS.append(row)
    print(f"  [{'met' if met else 'MISSED'}] {what}: {measured} (goal {target})", flush=True)
    return row


def goals() -> list[Goal]:
    return list(_GOALS)


def table() -> str:
    """The recorded rows as a Markdown table (what ``docs/benchmarks.md`` pastes)."""
    lines = [
        "| area | figure | measured | goal | |",
        "|---|---|---|---|---|",
    ]
    for row in _GOALS:
        verdict = "met" if row.met else "**missed**"
        lines.append(f"| {row.area} | {row.what} | {row.measured} | {row.target} | {verdict} |")
    return "\n".join(lines)
