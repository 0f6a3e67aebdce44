"""How the replication admin pages show states, moments and clock stamps to people."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from configsync.replication.selectors import history

STATE_COLOURS = {
    "healthy": "#1a7f37",
    "behind": "#9a6700",
    "degraded": "#9a6700",
    "failing": "#cf222e",
    "disabled": "#57606a",
}
"""Colour of each state word (never the only signal: the word is always shown)."""


def state_badge(state: str, title: str = "") -> SafeString:
    """``state`` as a coloured word (``class="cs-state cs-state-<state>"``)."""
    return format_html(
        '<span class="cs-state cs-state-{}" title="{}" style="color:#fff;background:{};'
        'padding:1px 6px;border-radius:3px;font-weight:bold">{}</span>',
        state,
        title,
        STATE_COLOURS.get(state, "#57606a"),
        state.upper(),
    )


def moment_ms(value: datetime | None) -> str:
    """``value`` in UTC to the millisecond (``-`` when ``None``): the one way the admin's pages
    show a moment (sync runs, conflicts, the overview, the audit trail, the versions), whatever
    ``TIME_ZONE``."""
    return "-" if value is None else history.moment_ms(value)


def moment_ago(value: datetime | None) -> str:
    """``value`` as ``moment_ms`` with how long ago it was (``never`` when ``None``)."""
    if value is None:
        return "never"
    return f"{moment_ms(value)} ({timesince(value)} ago)"


def hlc_moment(text: str) -> str:
    """The wall-clock time of an HLC stamp (``moment_ms``); the text itself when it holds no
    usable time (``selectors.history.hlc_time``: a malformed or ``.env`` version's stamp)."""
    return history.hlc_time(text)


def duration_ms(started: datetime | None, finished: datetime | None) -> str:
    """``finished - started`` in milliseconds (``-`` while running)."""
    if started is None or finished is None:
        return "-"
    return f"{round((finished - started).total_seconds() * 1000):,} ms"


def error_summary(error: str, limit: int = 160) -> str:
    """The class and a short reason of a recorded error (SyncRun.error never holds a value)."""
    line = error.strip().splitlines()[0] if error.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
