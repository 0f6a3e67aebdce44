"""Request bodies at the API's edge: only text every supported database can store.

``storable_text_problem`` phrases the one predicate of "storable text"
(``configsync.validation.text_problem``, which every model write also passes) for the edge (this
parser, and ``configsync.middleware.EdgeMiddleware`` for paths, query parameters and headers):
PostgreSQL refuses a NUL character in text, and a lone UTF-16 surrogate (``"\\ud800"`` in JSON)
is not Unicode text at all, so it encodes neither for PostgreSQL nor for SQLite — each would be a
500 (``DataError``, ``UnicodeEncodeError``) somewhere later, or a poison change for a peer.

The body parsers refuse lone surrogates anywhere (keys too), but leave a NUL inside a body to the
field that holds it: the serializers (and, beneath them, the model's validation) answer 400 naming
the field, and a replicated item is judged by the change validator, which can set one item aside
instead of refusing a peer's whole batch. Form and multipart bodies keep DRF's
parsers: Django decodes them with ``errors="replace"``, so they cannot carry a lone surrogate.

``StorableJSONParser`` also bounds nesting at ``app_settings.MAX_JSON_DEPTH`` *before* decoding:
``json.loads`` recurses once per level and a 100,000-deep body would end in ``RecursionError``.
The depth scan is ``configsync.validation.json_depth_exceeds``. Every refusal is a ``400``
naming the reason (and the top-level field when
there is one), never the offending text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from configsync.conf import app_settings
from configsync.validation import json_depth_exceeds, text_problem

# A surrogate can only come in as a ``\uD800``-``\uDFFF`` escape (raw ones are not valid UTF-8):
# without one in the text, the walk over the decoded body is skipped.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def storable_text_problem(text: str, *, nul_allowed: bool = False) -> str | None:
    """Why ``text`` cannot be stored on every supported backend (a sentence), or ``None``.

    ``nul_allowed`` skips the NUL check, for callers that leave NUL to a later, per-field check.
    """
    problem = text_problem(text, nul_allowed=nul_allowed)
    return f"{problem[0].upper()}{problem[1:]}." if problem else None


def _strings(data: Any) -> Iterator[tuple[str | None, str]]:
    """Every string (object keys too) in ``data`` with the top-level member it is under."""
    stack: list[tuple[str | None, Any]] = [(None, data)]
    top = True
    while stack:
        field, value = stack.pop()
        if isinstance(value, str):
            yield field, value
        elif isinstance(value, Mapping):
            for key, item in value.items():
                yield field, str(key)
                stack.append((str(key) if top else field, item))
        elif isinstance(value, list | tuple):
            stack.extend((field, item) for item in value)
        top = False


def check_storable(data: Any) -> None:
    """``ParseError`` (400) when a string anywhere in ``data`` (object keys too) holds a lone
    surrogate; NUL is left to the fields (module docstring)."""
    for field, text in _strings(data):
        reason = storable_text_problem(text, nul_allowed=True)
        if reason is not None:
            if field is not None and _FIELD_NAME.match(field):
                raise ParseError({field: [reason]})
            raise ParseError(reason)


class StorableJSONParser(JSONParser):
    """DRF's JSON parser, refusing nesting over ``MAX_JSON_DEPTH`` and lone surrogates."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError:
            raise ParseError(f"JSON parse error - the body is not valid {encoding}.") from None
        limit = app_settings.MAX_JSON_DEPTH
        if json_depth_exceeds(text, limit):
            raise ParseError(f"JSON parse error - nested deeper than {limit} levels.")
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid JSON"
            raise ParseError(f"JSON parse error - {reason}.") from None
        if _SURROGATE_ESCAPE.search(text):
            check_storable(data)
        return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
