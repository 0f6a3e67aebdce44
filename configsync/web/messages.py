"""The message storage of every page (``MESSAGE_STORAGE``): no message shows a secret.

Messages echo what a request named: the admin's "… with ID “<id>” doesn't exist" names whatever
the URL held, and a change message names the record. A secret pasted into a URL or a field must
not come back on the next page, nor sit in the session or the messages cookie in between, so
every message is masked as log lines are (``configsync.logging.mask_text``: secret shapes and
every secret this process knows) before it is stored.
"""

from __future__ import annotations

from typing import Any

from django.contrib.messages.storage.fallback import FallbackStorage
from django.utils.safestring import SafeData, mark_safe

from configsync.logging import mask_text


def message_masked(message: Any) -> Any:
    """``message`` with every secret masked; safe HTML stays safe (a mask adds no markup)."""
    if not isinstance(message, str):
        return message
    masked = mask_text(message)
    return mark_safe(masked) if isinstance(message, SafeData) else masked  # noqa: S308


class MaskingMessageStorage(FallbackStorage):
    """Django's default storage (cookie, then session), masking each message as it is added."""

    def add(self, level: int, message: Any, extra_tags: str | None = "") -> None:
        super().add(level, message_masked(message), extra_tags)
