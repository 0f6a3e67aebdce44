"""Subcommands of ``manage.py configsync``.

Every module in this package defines ``register(subparsers)``, which adds its subcommands and
sets ``handler=<callable(command, options)>`` on each parser. Handlers raise
``CommandError(reason, returncode=1)`` for a failure; a value printed on purpose comes last, on its
own line. The ``configsync`` management command discovers the modules; nothing else to wire.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError


def sentence(message: str) -> str:
    """``message`` with a lower-case first letter (for ``field: message``), ending in a stop."""
    text = message.strip()
    if text and not text.endswith((".", "?", "!")):
        text += "."
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text


def validation_sentences(exc: ValidationError) -> str:
    """A ``ValidationError`` as sentences: ``deployment: required for Azure OpenAI.`` — one per
    field, fields in order, separated by a space; messages never carry values."""
    if not hasattr(exc, "error_dict"):
        return " ".join(sentence(m)[:1].upper() + sentence(m)[1:] for m in exc.messages)
    parts = []
    for field, messages in exc.message_dict.items():
        text = " ".join(sentence(m) for m in messages)
        parts.append(text[:1].upper() + text[1:] if field == "__all__" else f"{field}: {text}")
    return " ".join(parts)
