"""The masking filter installed by settings.LOGGING, seen through the configured handlers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from configsync.logging import SecretMaskingFilter, mask_text, register_secret
from configsync.services.system_config import system_config_set


def _configured_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return [
        handler
        for logger in loggers
        for handler in logger.handlers
        if not type(handler).__module__.startswith("_pytest")  # pytest's own capture
    ]


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Redirect every stream handler the settings installed into one buffer."""
    buffer = io.StringIO()
    swapped = []
    for handler in _configured_handlers():
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            swapped.append((handler, handler.setStream(buffer)))
    assert swapped, "settings.LOGGING installed no stream handler"
    yield buffer
    for handler, stream in swapped:
        handler.setStream(stream)


def test_every_configured_handler_masks() -> None:
    for handler in _configured_handlers():
        if isinstance(handler, logging.NullHandler):
            continue
        assert any(isinstance(f, SecretMaskingFilter) for f in handler.filters), handler


def test_a_canary_from_any_logger_is_masked(log_output: io.StringIO, canary: str) -> None:
    logging.getLogger("some.lib").error("token %s", canary)
    logging.getLogger("django.request").error("failed with api_key=%s", "hunter2-plain")
    logging.getLogger("celery.worker").warning("connect postgres://app:pw-CANARY@db/app")
    output = log_output.getvalue()
    assert "token ********" in output
    assert canary not in output
    assert "hunter2-plain" not in output and "api_key=********" in output
    assert "pw-CANARY" not in output and "postgres://app:********@db/app" in output


@pytest.mark.django_db
def test_a_stored_secret_of_no_known_shape_is_masked_in_tracebacks(
    log_output: io.StringIO,
) -> None:
    shapeless = "correct-horse-battery-CANARY"
    system_config_set(key="PASSPHRASE", value=shapeless, is_sensitive=True)
    try:
        raise RuntimeError(f"could not use {shapeless}")
    except RuntimeError:
        logging.getLogger("another.lib").exception("failed: %r", {"value": shapeless})
    output = log_output.getvalue()
    assert "Traceback" in output and "RuntimeError: could not use ********" in output
    assert shapeless not in output


def test_mask_text_covers_bearer_and_registered_values() -> None:
    register_secret("plain-CANARY-registered")
    text = mask_text("Authorization: Bearer abcdefghijklmnop and plain-CANARY-registered")
    assert "abcdefghijklmnop" not in text and "plain-CANARY-registered" not in text


def test_short_secrets_are_masked_as_whole_tokens_only() -> None:
    register_secret("Zq7x")  # short: a whole token only
    register_secret("Wv3kQp9tLm")  # long: anywhere, even glued to other text
    register_secret("Zq7")  # too short to register at all
    text = mask_text("env=Zq7x; Zq7xylophone; xZq7x; Zq7 id=abcWv3kQp9tLmdef")
    assert text == "env=********; Zq7xylophone; xZq7x; Zq7 id=abc********def"
