"""Masking of secrets in log records, installed on every handler by ``settings.base.LOGGING``.

Two nets, because either alone misses something:

* every plaintext this process has set or decrypted through an ``EncryptedTextField`` (or passed
  to :func:`register_secret`) is replaced wherever it appears in the rendered message, arguments
  or exception text;
* well-known secret shapes (``sk-...`` API keys, ``Bearer`` tokens, ``password=...``-style pairs
  and credentials inside URLs) are masked even when this process never saw the value.

Only secrets are registered (plain settings and plain ``.env`` bases are ordinary text fields), but
a secret can still be short or an ordinary word. How much of a registered value is masked is a
trade-off between leaking a secret and mangling ordinary text, decided by length:

* 8 characters or more: masked wherever it appears, even inside a longer word (fails closed: a
  real key glued to other text is still hidden);
* 4 to 7 characters: masked only as a whole token, never inside a longer run of letters, digits
  or ``_``. Masking a short secret such as ``prod`` inside ``production`` would garble every such
  line, and ``********uction`` would point at the secret it is meant to hide;
* under 4 characters: not registered. Masking every ``on`` or ``42`` would make logs unreadable,
  and a secret that short is guessed faster than it is read from a log.
"""

from __future__ import annotations

import json
import logging
import re
import threading

MASK = "********"
_MIN_SECRET_LENGTH = 4
_MIN_SUBSTRING_LENGTH = 8
_MAX_REMEMBERED = 10_000

_known: dict[str, None] = {}
_known_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None

_SHAPES = [
    (re.compile(r"\b(sk-[A-Za-z0-9_\-]{6,})"), MASK),
    (re.compile(r"(?i)\b(bearer|api-key)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + MASK),
    (
        re.compile(
            r"(?i)\b([A-Z0-9_]*(?:password|passwd|secret|token|api_key|apikey|access_key)"
            r"[A-Z0-9_]*)(\s*[=:]\s*)(['\"]?)[^\s'\",;&]+"
        ),
        r"\1\2\3" + MASK,
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]+):[^@\s/]+@"), r"\1:" + MASK + "@"),
]


def _escaped_forms(value: str) -> set[str]:
    """How ``value`` reads inside a ``repr`` (an error report's frame variables, ``%r``), a JSON
    text and a bytes ``repr``: a backslash, a quote, a control or non-ASCII character is escaped
    there, and the raw text would not match."""
    return {
        value,
        repr(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value.encode("utf-8", "surrogatepass"))[2:-1],
    }


def register_secret(value: str) -> None:
    """Remember ``value`` so that this process never logs it (length rules: module docstring),
    in its escaped forms too."""
    global _pattern
    if not isinstance(value, str) or len(value) < _MIN_SECRET_LENGTH or value in _known:
        return
    with _known_lock:
        for form in _escaped_forms(value):
            if len(_known) >= _MAX_REMEMBERED:
                _known.pop(next(iter(_known)))
            _known[form] = None
        _pattern = None


def _known_pattern() -> re.Pattern[str] | None:
    global _pattern
    if _pattern is None and _known:
        with _known_lock:
            # Longest first: where one secret contains another, the whole of it is masked.
            ordered = sorted(_known, key=len, reverse=True)
            anywhere = [re.escape(v) for v in ordered if len(v) >= _MIN_SUBSTRING_LENGTH]
            tokens = [re.escape(v) for v in ordered if len(v) < _MIN_SUBSTRING_LENGTH]
            if tokens:
                anywhere.append(r"(?<!\w)(?:" + "|".join(tokens) + r")(?!\w)")
            _pattern = re.compile("|".join(anywhere))
    return _pattern


def mask_text(text: str) -> str:
    """``text`` with every known secret and every secret-shaped substring masked."""
    pattern = _known_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape, replacement in _SHAPES:
        text = shape.sub(replacement, text)
    return text


class SecretMaskingFilter(logging.Filter):
    """Rewrites each record so that neither its message nor its traceback shows a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not let raw args through
            message = f"{record.msg!r} (unformattable arguments dropped)"
        record.msg = mask_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True
