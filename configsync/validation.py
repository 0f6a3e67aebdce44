"""Rules every value must pass wherever it enters (REST, admin, CLI, .env bridge, replication).

The storable-text rule: text must be storable, and read back unchanged, on every supported
backend. PostgreSQL refuses the NUL character in ``text``/``varchar`` (``DataError``) and lone
surrogates cannot be encoded as UTF-8 at all (SQLite stores them mangled, every JSON renderer
fails on them). A value SQLite accepted would otherwise block every PostgreSQL peer forever, so
the rule is checked on the value itself and, for JSON, on every string inside it (keys included).

Messages name the rule, never the value.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def text_problem(text: str, *, nul_allowed: bool = False) -> str | None:
    """Why ``text`` cannot be stored on every backend, or ``None`` when it can.

    ``nul_allowed`` skips the NUL check, for callers that leave NUL to a later, per-field check.
    """
    match = (_SURROGATE if nul_allowed else _UNSTORABLE).search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "contains a NUL character, which PostgreSQL cannot store"
    return "contains a lone surrogate, which is not valid Unicode text"


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON ``text`` nests arrays/objects deeper than ``limit``.

    Looks only at brackets outside strings (found by one regular expression): linear and never
    recursive, so it can judge a body ``json.loads`` would die on (``RecursionError``) before
    decoding it. Our own because no well-kept JSON library for Python offers a depth limit.
    """
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def value_problem(value: Any, *, max_depth: int = 10_000) -> str | None:
    """``text_problem`` for every string in ``value`` (JSON-like: dicts, lists, scalars).

    Iterative, so a deeply nested value cannot exhaust the stack; containers nested deeper than
    ``max_depth`` are a problem of their own.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return problem
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return f"is nested deeper than {max_depth} levels"
            children = list(item.items()) if isinstance(item, dict) else list(item)
            for child in children:
                if isinstance(child, tuple):  # a dict item: its key and its value
                    stack.extend((part, depth + 1) for part in child)
                else:
                    stack.append((child, depth + 1))
    return None


def validate_storable(value: Any, *, field: str) -> None:
    """Raise ``ValidationError({field: ...}, code="unstorable")`` when ``value`` is not storable."""
    problem = value_problem(value)
    if problem:
        raise ValidationError({field: f"The value {problem}."}, code="unstorable")


def validate_storable_texts(**texts: str | None) -> None:
    """``ValidationError`` naming each field whose text no supported database can store.

    For lookup arguments checked before any query (a NUL in a ``filter(key=...)`` is a
    ``DataError`` on PostgreSQL) and for text that reaches a service from outside any form
    (the CLI's standard input, a non-UTF-8 argument).
    """
    errors = {
        field: f"The value {problem}."
        for field, text in texts.items()
        if isinstance(text, str) and (problem := text_problem(text))
    }
    if errors:
        raise ValidationError(errors, code="unstorable")


def storable_text_errors(instance: models.Model, *, exclude: set[str] | None = None) -> dict:
    """Per text field of ``instance`` (``CharField``/``TextField``, encrypted ones excepted), the
    storable-text problem of its value. Reads attributes raw: never decrypts."""
    errors: dict[str, str] = {}
    fields = _text_fields(type(instance))
    values = instance.__dict__
    # One search over every text first (the rule is per character, so a problem in any of
    # them is found in the joined text, and none in it means none in each): records are
    # validated by the thousand when a page of changes arrives.
    texts = [v for _, attname in fields if isinstance(v := values.get(attname), str)]
    if _UNSTORABLE.search("".join(texts)) is None:
        return errors
    for name, attname in fields:
        if exclude and name in exclude:
            continue
        value = values.get(attname)
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                errors[name] = f"The value {problem}."
    return errors


@functools.cache
def _text_fields(model: type[models.Model]) -> tuple[tuple[str, str], ...]:
    """``(name, attname)`` of the model's text fields but encrypted ones (read once per model:
    this runs for every record validated)."""
    from configsync.crypto.fields import is_encrypted_field

    return tuple(
        (f.name, f.attname)
        for f in model._meta.concrete_fields
        if not is_encrypted_field(f) and isinstance(f, models.CharField | models.TextField)
    )


def token_plaintext(instance: models.Model, field_name: str) -> str | None:
    """Verify the ciphertext token held by ``instance.<field_name>`` against its record.

    Authenticated decryption with the record's own context (``model.field:natural key``): a
    token copied from another record, field or model, or altered, is a ``ValidationError``.
    Returns the plaintext for the caller to validate and drop (it is neither cached on the
    instance nor kept anywhere), or ``None`` when there is nothing to verify: no token, pending
    plaintext (not a token yet), or a token of a key this node's keyring lacks (stored and
    relayed as is, reported unreadable).
    """
    from configsync.crypto.fields import Ciphertext, encryption_context
    from configsync.crypto.keyring import KeyringError, TokenError, get_keyring, token_key_id

    token = instance.__dict__.get(field_name)
    if not isinstance(token, Ciphertext):
        return None
    try:
        keyring = get_keyring()
    except KeyringError:
        return None
    try:
        if token_key_id(token) not in keyring:
            return None
        return keyring.decrypt(token, context=encryption_context(instance, field_name))
    except TokenError as exc:
        raise ValidationError(
            {field_name: f"The ciphertext does not belong to this record: {exc}."},
            code="invalid_token",
        ) from None
