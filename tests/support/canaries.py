"""Secret-leak canaries: make them, and find them in any text or bytes in any form they may take.

A canary is a secret nobody else could write by chance, ``sk-CANARY-<label>-<random>``; the
``special`` ones end in ``/+=é`` so that their URL-encoded, JSON-escaped and ``repr`` forms differ
from the plain one. Every canary made in this process is remembered (``SESSION``), so a scan that
is given no canaries looks for all of them, and so does the session's log watch
(:class:`CanaryLogWatch`, registered by ``tests/conftest.py``): every log record of the whole run,
as the configured handlers write it, is searched for every canary made so far, and a test during
which one was logged fails (a hit outside any test fails the session).

:func:`assert_no_canary` looks for each canary in each form (:func:`canary_forms`): plain; base64,
standard and URL-safe, padded or not and at each of the three byte alignments (the part of the
encoding that only the canary's own bytes decide, so it is found inside a longer encoded blob);
URL-encoded (``quote``, ``quote_plus``); JSON-escaped (ASCII and UTF-8); HTML-escaped; Python's
``repr`` of the text and of its UTF-8 bytes. Its failure message says where, which canary (by
label) and in which form, with some context in which every canary is replaced by
``<canary:label>``: it never prints a canary.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from configsync.logging import SecretMaskingFilter

PREFIX = "sk-CANARY-"
SPECIAL_TAIL = "/+=é"
_CONTEXT = 60


@dataclass(frozen=True)
class Canary:
    label: str
    value: str

    def __str__(self) -> str:  # never the value by accident
        return f"<canary:{self.label}>"


@dataclass(frozen=True)
class Hit:
    canary: Canary
    form: str
    start: int
    end: int


class CanarySet:
    """Canaries, and one compiled search over all their forms."""

    def __init__(self) -> None:
        self._canaries: dict[str, Canary] = {}
        self._pattern: re.Pattern[bytes] | None = None
        self._forms: dict[bytes, tuple[Canary, str]] = {}

    def make(self, label: str, *, special: bool = False) -> str:
        """A new canary named ``label`` (unique in the set); ``special`` adds ``/+=é``."""
        if label in self._canaries:
            raise ValueError(f"canary {label!r} made twice")
        value = f"{PREFIX}{label}-{secrets.token_hex(6)}" + (SPECIAL_TAIL if special else "")
        self.add(Canary(label, value))
        if self is not SESSION:  # the session's log watch looks for every canary
            SESSION.add(Canary(f"{label}#{id(self):x}", value))
        return value

    def add(self, canary: Canary) -> None:
        self._canaries[canary.label] = canary
        for form, encoded in canary_forms(canary.value).items():
            self._forms.setdefault(encoded, (canary, form))
        self._pattern = None

    def __iter__(self) -> Iterator[Canary]:
        return iter(self._canaries.values())

    def __len__(self) -> int:
        return len(self._canaries)

    def labels(self) -> list[str]:
        return list(self._canaries)

    def hits(self, data: str | bytes) -> list[Hit]:
        """Every place in ``data`` where one of the canaries appears, in any form."""
        if not self._forms:
            return []
        if self._pattern is None:
            ordered = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile(b"|".join(re.escape(f) for f in ordered))
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        return [
            Hit(*self._forms[m.group()], m.start(), m.end()) for m in self._pattern.finditer(raw)
        ]

    def redact(self, data: str | bytes) -> str:
        """``data`` as text with every canary replaced by ``<canary:label>``."""
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        out, last = [], 0
        for hit in self.hits(raw):
            out.append(raw[last : hit.start].decode("utf-8", "replace"))
            out.append(f"<canary:{hit.canary.label}:{hit.form}>")
            last = hit.end
        out.append(raw[last:].decode("utf-8", "replace"))
        return "".join(out)

    def assert_clean(self, data: str | bytes | None, *, where: str) -> None:
        """Fail, naming ``where``, the canary's label and its form, when any canary is in
        ``data``. The message shows context with every canary redacted."""
        if not data:
            return
        found = self.hits(data)
        if not found:
            return
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        lines = [f"{len(found)} canary leak(s) in {where}:"]
        for hit in found[:5]:
            window = raw[max(0, hit.start - _CONTEXT) : hit.end + _CONTEXT]
            lines.append(
                f"  - canary {hit.canary.label!r} ({_preview(hit.canary.value)}) as {hit.form} "
                f"at byte {hit.start}: …{self.redact(window)}…"
            )
        raise AssertionError("\n".join(lines))


def _preview(value: str) -> str:
    """The prefix and the label only: enough to recognise it, never the canary."""
    return value[: len(PREFIX) + 2] + "…"


def _base64_cores(raw: bytes) -> dict[str, bytes]:
    """The part of the base64 encoding of ``raw`` that depends on ``raw`` alone, for each of the
    three alignments it may have inside a longer encoded blob (so padding does not matter)."""
    forms: dict[str, bytes] = {}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = -(-8 * shift // 6)
        end = (8 * (shift + len(raw))) // 6
        core = encoded[start:end]
        forms[f"base64 (alignment {shift})"] = core
        forms[f"base64url (alignment {shift})"] = core.replace(b"+", b"-").replace(b"/", b"_")
    return forms


def canary_forms(value: str) -> dict[str, bytes]:
    """Every form of ``value`` this module looks for, by name (see the module's docstring)."""
    raw = value.encode("utf-8")
    forms = {
        "plain": raw,
        "url-encoded": quote(value, safe="").encode(),
        "url-encoded (path)": quote(value).encode(),
        "url-encoded (form)": quote_plus(value).encode(),
        "url-encoded (lower-case hex)": re.sub(
            r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(value, safe="")
        ).encode(),
        "json-escaped": json.dumps(value)[1:-1].encode(),
        "json-escaped (utf-8)": json.dumps(value, ensure_ascii=False)[1:-1].encode(),
        "html-escaped": html.escape(value).encode(),
        "repr": repr(value)[1:-1].encode("utf-8"),
        "bytes repr": repr(raw)[2:-1].encode(),
        "base64": base64.b64encode(raw),
        "base64 (unpadded)": base64.b64encode(raw).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw),
        "base64url (unpadded)": base64.urlsafe_b64encode(raw).rstrip(b"="),
        **_base64_cores(raw),
    }
    unique: dict[str, bytes] = {}
    for name, encoded in forms.items():
        if encoded not in unique.values():
            unique[name] = encoded
    return unique


SESSION = CanarySet()
"""Every canary made through :func:`canary_make` in this process."""


def canary_make(label: str, *, special: bool = False) -> str:
    """A new canary, remembered in ``SESSION``."""
    return SESSION.make(label, special=special)


def assert_no_canary(
    data: str | bytes | None, *, where: str, canaries: CanarySet | None = None
) -> None:
    """Fail, naming ``where``, when ``data`` holds any canary of ``canaries`` (default: every
    canary made in this process) in any form."""
    (SESSION if canaries is None else canaries).assert_clean(data, where=where)


class _WatchHandler(logging.Handler):
    """Searches every record, masked as the configured handlers mask it, for ``SESSION``'s
    canaries; keeps where each hit was (by logger), never the text."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.addFilter(SecretMaskingFilter())
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not len(SESSION):
            return
        try:
            text = self.format(record)
        except Exception:  # a broken record is the logging package's problem, not a leak
            return
        for hit in SESSION.hits(text):
            self.found.append(
                f"logger {record.name!r} ({record.levelname}) logged canary "
                f"{hit.canary.label!r} as {hit.form}: {SESSION.redact(text)[:300]}"
            )

    def take(self) -> list[str]:
        found, self.found = self.found, []
        return found


class CanaryLogWatch:
    """A pytest plugin: the whole session's log records are searched for canaries. A test in
    whose setup, call or teardown one was logged fails with where; a hit outside any test
    fails the session at its end."""

    def __init__(self) -> None:
        self.handler = _WatchHandler()
        self.loggers: list[logging.Logger] = []
        self._attach()

    def _attach(self) -> None:
        """Put the handler on the root logger and on every logger that does not propagate to
        it, where missing: a test that configures logging again (``dictConfig``, Django's
        ``configure_logging``) replaces the handlers, and later tests must still be watched."""
        for logger in [logging.getLogger()] + [
            logger
            for logger in logging.Logger.manager.loggerDict.values()
            if isinstance(logger, logging.Logger) and not logger.propagate and logger.handlers
        ]:
            if self.handler not in logger.handlers:
                logger.addHandler(self.handler)
            if logger not in self.loggers:
                self.loggers.append(logger)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._attach()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Any:
        report = yield
        found = self.handler.take()
        if found and not report.failed:
            report.outcome = "failed"
            report.longrepr = f"canary leak in the logs during {report.when}:\n" + "\n".join(
                f"  - {line}" for line in found
            )
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        found = self.handler.take()
        for logger in self.loggers:
            logger.removeHandler(self.handler)
        if found:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            print("\ncanary leak in the logs outside any test:\n" + "\n".join(found))
