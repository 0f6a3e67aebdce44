"""Masking of secrets in log records, installed on every handler by ``settings.base.LOGGING``.

Two nets, because either alone misses something:

* every plaintext this process has set or decrypted through an ``EncryptedTextField`` (or passed
  to :func:`register_secret`) is replaced wherever it appears in the rendered message, arguments
  or exception text;
* well-known secret shapes (``sk-...`` API keys, ``Bearer`` tokens, ``password=...``-style pairs
  and credentials inside URLs) are masked even when this process never saw the value.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "********"
_MIN_SECRET_LENGTH = 4
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


def register_secret(value: str) -> None:
    """Remember ``value`` so that this process never logs it."""
    global _pattern
    if not isinstance(value, str) or len(value) < _MIN_SECRET_LENGTH or value in _known:
        return
    with _known_lock:
        if len(_known) >= _MAX_REMEMBERED:
            _known.pop(next(iter(_known)))
        _known[value] = None
        _pattern = None


def _known_pattern() -> re.Pattern[str] | None:
    global _pattern
    if _pattern is None and _known:
        with _known_lock:
            ordered = sorted(_known, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(value) for value in ordered))
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
