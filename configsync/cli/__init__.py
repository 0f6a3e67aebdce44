"""Subcommands of ``manage.py configsync``.

Every module in this package defines ``register(subparsers)``, which adds its subcommands and
sets ``handler=<callable(command, options)>`` on each parser. Handlers raise
``CommandError(reason, returncode=1)`` for a failure; a value printed on purpose comes last, on its
own line. The ``configsync`` management command discovers the modules; nothing else to wire.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from configsync.conf import app_settings


def sentence(message: str) -> str:
    """``message`` ending in a stop (a full sentence after ``field:``)."""
    text = message.strip()
    if text and not text.endswith((".", "?", "!")):
        text += "."
    return text


def validation_sentences(exc: ValidationError) -> str:
    """A ``ValidationError`` as sentences: ``deployment: Required for Azure OpenAI.`` — the field
    first, then its messages, each ending in a stop; fields in order, separated by a space.
    Messages never carry values."""
    if not hasattr(exc, "error_dict"):
        return " ".join(sentence(m) for m in exc.messages)
    parts = []
    for field, messages in exc.message_dict.items():
        text = " ".join(sentence(m) for m in messages)
        parts.append(text if field == "__all__" else f"{field}: {text}")
    return " ".join(parts)


REVEAL_REFUSED = (
    "the reveal right is turned off for the command line on this node (CONFIGSYNC_CLI_REVEAL)"
)


def cli_may_reveal() -> bool:
    """Whether the local operator holds the reveal right (``get --reveal``, ``export --reveal``,
    ``run`` with secrets): ``CONFIGSYNC_CLI_REVEAL``, true unless the node sets it false."""
    return bool(app_settings.CLI_REVEAL)
