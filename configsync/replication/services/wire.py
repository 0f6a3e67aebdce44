"""The wire form of replicated changes: versions, feed items, and their validation.

A feed item is ``{"model", "key", "hlc", "origin", "vv", "deleted", "data", "seq", "losers",
"resolved"}`` (``configsync.replication.selectors.feed.record_as_change``). ``changes_check``
validates a received batch item by item, exactly like a local write of each record, and bounds
every timestamp by ``CONFIGSYNC_MAX_CLOCK_SKEW_SECONDS``; it never writes. Values stay in wire
form (ciphertext for secrets): this module never decrypts.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.core import validators as django_validators
from django.core.exceptions import ValidationError
from django.db import connections, models
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from configsync.conf import app_settings, settings_state
from configsync.crypto.fields import Ciphertext, is_encrypted_field
from configsync.crypto.keyring import is_token, keyring_built
from configsync.replication import registry
from configsync.replication.errors import ChangeValidationError
from configsync.replication.hlc import HLC, HLCParseError, physical_now_ms

logger = logging.getLogger(__name__)

APPLIED = "applied"
STALE = "stale"
CONFLICT = "conflict"
QUARANTINED = "quarantined"
"""An item this node could not store: kept as a ``QuarantinedChange``; the rest applies."""


@dataclass(frozen=True)
class Version:
    """One version of a record as it travels: ``{"hlc", "origin", "deleted", "data"}``."""

    hlc: HLC
    origin: str
    deleted: bool
    data: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hlc": str(self.hlc),
            "origin": self.origin,
            "deleted": self.deleted,
            "data": self.data,
        }


@dataclass(frozen=True)
class ParsedChange:
    """A validated feed item."""

    model: registry.ReplicatedModel
    key: str
    version: Version
    vv: dict[str, str]
    losers: list[Version] = field(default_factory=list)
    resolved: list[tuple[frozenset[str], str]] = field(default_factory=list)


@dataclass
class ItemResult:
    """What applying one item did: ``applied``, ``stale``, ``conflict`` or ``quarantined``.

    ``unreadable`` is set when the item holds ciphertext made with a key this node's keyring does
    not have: it is stored and relayed as-is, and reported rather than failing the batch.
    ``reason`` (quarantined items only) says why this node could not store it; never a value.
    ``model`` and ``key`` are as the item named them, escaped to ASCII when they are not text a
    node could store.
    """

    index: int
    model: str
    key: str
    status: str
    unreadable: bool = False
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "index": self.index,
            "model": self.model,
            "key": self.key,
            "status": self.status,
            "unreadable": self.unreadable,
        }
        if self.status == QUARANTINED:
            result["reason"] = self.reason
        return result


CLOCK_SKEW = "clock skew"
"""Prefix of the reason of an item held for a timestamp beyond the allowed skew."""


class _Refused(Exception):
    """Why one item of a batch cannot be stored (internal to ``_check_item``)."""

    def __init__(self, *reasons: str) -> None:
        super().__init__(reasons[0])
        self.reasons = list(reasons)


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise _Refused(reason)


@dataclass(frozen=True)
class _Bound:
    """The latest wall time this node accepts in any HLC field of a received item."""

    now_ms: int
    limit_ms: int
    parsed: dict[str, HLC] = field(default_factory=dict)
    """Texts parsed so far (an item's version is also its vector's entry for its node)."""
    models: dict[str, registry.ReplicatedModel | None] = field(default_factory=dict)
    """Per model label named in the batch: its registration (``None``: not replicated)."""
    fast: dict[registry.ReplicatedModel, _FastModel | None] = field(default_factory=dict)
    """Per model: its compiled validation, when usable for this batch (see :meth:`fast_of`)."""

    @classmethod
    def now(cls) -> _Bound:
        now = physical_now_ms()
        return cls(now, now + int(app_settings.MAX_CLOCK_SKEW_SECONDS * 1000))

    def model(self, label: str) -> registry.ReplicatedModel:
        """The registration of ``label``; refused when it is not a replicated model."""
        try:
            rm = self.models[label]
        except KeyError:
            try:
                rm = registry.get(label)
            except LookupError:
                rm = None
            self.models[label] = rm
        if rm is None:
            raise _Refused(f"unknown model {escaped(label, 100)!r}")
        return rm

    def fast_of(self, rm: registry.ReplicatedModel) -> _FastModel | None:
        """``rm``'s compiled validation, decided once per batch: only while the model has no
        validation hook (tests swap hooks) and nothing listens to its ``pre_init``/``post_init``
        (the compiled path builds instances without ``Model.__init__``)."""
        try:
            return self.fast[rm]
        except KeyError:
            fast = _compiled(rm).fast
            model = rm.model
            if fast is not None and (
                registry.has_validation_hook(rm.label)
                or pre_init.has_listeners(model)
                or post_init.has_listeners(model)
            ):
                fast = None
            self.fast[rm] = fast
            return fast

    def stamp(self, text: Any, what: str) -> HLC:
        """Parse an HLC field; refused when malformed or beyond the bound (clock skew)."""
        stamp = self.parsed.get(text) if isinstance(text, str) else None
        if stamp is None:
            try:
                stamp = HLC.parse(text)
            except HLCParseError as exc:
                raise _Refused(f"{what}: {exc}") from None
            self.parsed[text] = stamp
        if stamp.wall_ms > self.limit_ms:
            raise _Refused(
                f"{CLOCK_SKEW}: {what} is {stamp.wall_ms - self.now_ms} ms ahead of this node's "
                f"clock (at most {app_settings.MAX_CLOCK_SKEW_SECONDS} s allowed); held until "
                "it is within the bound"
            )
        return stamp


def _is_node_id(value: Any) -> bool:
    return isinstance(value, str) and _is_node_text(value)


@lru_cache(maxsize=1024)
def _is_node_text(value: str) -> bool:
    # A batch names a handful of nodes, thousands of times.
    try:
        HLC.parse(str(HLC(0, 0, value)))
    except HLCParseError:
        return False
    return True


# Django's messages for these codes never quote the value; any other code is reported by name.
_SAFE_CODES = {
    "max_length",
    "blank",
    "null",
    "invalid_key",
    "invalid_name",
    "unstorable",
    "invalid_token",
    "not_canonical",
    "invalid_json",
    "invalid_int",
    "invalid_float",
    "invalid_bool",
    "invalid_url",
    "invalid_type",
    "unknown_related",
}


def validation_reasons(exc: ValidationError) -> list[str]:
    """``field: message`` per problem of a model's validation; never a value."""
    reasons: list[str] = []
    by_field = exc.error_dict if hasattr(exc, "error_dict") else {"data": exc.error_list}
    for name, errors in by_field.items():
        for error in errors:
            for leaf in error.error_list if hasattr(error, "error_list") else [error]:
                if leaf.code is None or leaf.code in _SAFE_CODES:
                    message = leaf.message % leaf.params if leaf.params else leaf.message
                else:
                    message = f"invalid ({leaf.code})"
                reasons.append(f"{name}: {message}")
    return reasons or ["data: invalid"]


def _sensitive_problem(value: Any) -> str | None:
    """A sensitive field travels as a ciphertext token (or null), never as its plain value."""
    return None if value is None or is_token(value) else "must be a configsync ciphertext token"


def _wire_type_problem(f: models.Field, value: Any) -> str | None:
    """Whether ``value`` has the JSON type the wire form of ``f`` carries (no coercion: a list
    where a scalar belongs, a number for text, a string for a flag are refused)."""
    if value is None:
        return None if f.null else "must not be null"
    if is_encrypted_field(f):
        return None if is_token(value) else "must be a configsync ciphertext token or null"
    if isinstance(f, models.BooleanField):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(f, models.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if isinstance(f, models.JSONField):
        return None
    return None if isinstance(value, str) else "must be a string"


def _wire_type_check(f: models.Field) -> Callable[[Any], str | None]:
    """``_wire_type_problem`` of ``f``, with the field's kind decided once."""
    if is_encrypted_field(f):
        return functools.partial(_wire_type_problem, f)
    if not isinstance(f, models.BooleanField | models.IntegerField | models.JSONField):
        text_null = None if f.null else "must not be null"

        def text(value: Any) -> str | None:
            if value is None:
                return text_null
            return None if isinstance(value, str) else "must be a string"

        return text
    if isinstance(f, models.JSONField):
        return lambda value: "must not be null" if value is None and not f.null else None
    if isinstance(f, models.BooleanField):
        wanted: tuple[type, ...] = (bool,)
        problem = "must be true or false"
    else:
        wanted, problem = (int,), "must be an integer"
    null = None if f.null else "must not be null"

    def check(value: Any) -> str | None:
        if value is None:
            return null
        if isinstance(value, wanted) and (wanted[0] is bool or not isinstance(value, bool)):
            return None
        return problem

    return check


def _check_key(rm: registry.ReplicatedModel, key: Any) -> str:
    _require(
        isinstance(key, str) and 0 < len(key) <= 255,
        "key must be a non-empty string of at most 255 characters",
    )
    # The models' key patterns end in "$", which also matches before a final newline (their
    # clean() refuses it; a tombstone's key meets only this check).
    _require(not key.endswith("\n"), "key must not end with a newline")
    check = _compiled(rm).key_check
    if check is not None and check(key):
        return str(key)
    field_ = rm.model._meta.get_field(rm.natural_key_field)
    assert isinstance(field_, models.Field)
    try:
        field_.clean(key, None)
    except ValidationError as exc:
        raise _Refused(*(f"key: {r.split(': ', 1)[1]}" for r in validation_reasons(exc))) from None
    return str(key)


def _validate_data(
    rm: registry.ReplicatedModel, key: str, data: Any, bound: _Bound
) -> dict[str, Any]:
    """The wire form, validated exactly like a local write of the record (see the registry)."""
    _require(isinstance(data, dict), "data must be an object (or null for a tombstone)")
    compiled = _compiled(rm)
    checks = compiled.checks
    for name, value in data.items():
        check = checks.get(name, _unknown)
        if check is not None and check(value) is not None:
            _wire_refuse(rm, key, data, compiled)
    key_name = rm.natural_key_field
    if key_name in data and data[key_name] != key:
        raise _Refused(f"{key_name} does not match the item's key")
    fast = bound.fast_of(rm)
    if fast is not None:
        with contextlib.suppress(Exception):  # anything: the ordinary validation below decides
            fast.validate(key, data)
            return dict(data)
    instance = rm.model()
    try:
        rm.deserialize_into(instance, dict(data))
        setattr(instance, rm.natural_key_field, key)
        rm.validate(instance)
    except ValidationError as exc:
        raise _Refused(*validation_reasons(exc)) from None
    except (TypeError, ValueError) as exc:
        raise _Refused(f"data: invalid ({type(exc).__name__})") from None
    return dict(data)


def _unknown(value: Any) -> str:
    """The check of a name the wire form does not carry (see ``_Compiled.checks``)."""
    return "unknown"


def _wire_refuse(
    rm: registry.ReplicatedModel, key: str, data: dict[str, Any], compiled: _Compiled
) -> None:
    """Raise ``_Refused`` with every reason ``data`` fails its JSON types: unknown fields
    first (alone), else each field's problem and a key that does not match the item's."""
    unknown = sorted(name for name in data if name not in compiled.names)
    _require(
        not unknown,
        f"unknown fields: {', '.join(escaped(name, 64) for name in unknown[:20])}",
    )
    wire_problems = compiled.wire_problems
    problems = [
        f"{name}: {problem}"
        for name, value in data.items()
        if name in wire_problems and (problem := wire_problems[name](value))
    ]
    if rm.natural_key_field in data and data[rm.natural_key_field] != key:
        problems.append(f"{rm.natural_key_field} does not match the item's key")
    raise _Refused(*problems)


class _NotFast(Exception):
    """A compiled check could not vouch for a value: the ordinary validation decides."""


TextCheck = Callable[[Any], bool]


@dataclass(frozen=True)
class _FastModel:
    """Validation of a received version of one model, compiled once, for models validated by
    ``full_clean`` (no validation hook) whose wire form is plain (no relations, no sensitive
    fields). Exactly what the ordinary path does, cheaper, where it passes:

    * :meth:`validate` makes the unsaved instance ``model()`` + ``deserialize_into`` would make
      (the fields' defaults, the wire values through ``to_python`` where that is not the
      identity for the value's checked JSON type, tokens as ``Ciphertext``), without
      ``Model.__init__`` — so only while nothing listens to ``pre_init``/``post_init``
      (``_Bound.fast_of``) — and runs what ``ReplicatedModel.validate`` runs on it without a
      hook: ``full_clean`` without the encrypted fields and the uniqueness query (constraints
      only when the model has any: otherwise Django's check is a router call and no loop);
    * the instance's ``clean_fields`` is Django's loop with each text field's ``Field.clean``
      replaced by a check compiled from the field (:func:`_text_check`); other fields are
      cleaned by Django. A value it cannot vouch for raises ``_NotFast`` and the caller
      validates the item the ordinary way (and reports its reasons). The model's ``clean()``
      runs unchanged.
    """

    model: type[models.Model]
    base: dict[str, Any]
    """Per attribute, the default ``Model.__init__`` gives it when that is a constant (Django's
    ``get_default`` returns the same object every time), computed once."""
    dynamic: tuple[tuple[str, models.Field], ...]
    """Attributes whose default is a callable: called per instance, as ``__init__`` does."""
    setters: dict[str, tuple[str, Callable[[Any], Any] | None]]
    key_attname: str
    fields: tuple[tuple[str, str, bool, Any, models.Field, TextCheck | None], ...]
    """Per field ``clean_fields`` visits: name, attribute, blank, empty values, field, check."""
    exclude: tuple[str, ...]
    """``ReplicatedModel.encrypted_field_names``: what ``validate`` leaves to ``clean()``."""
    constraints: bool
    """Whether the model or a parent declares constraints (``Meta.constraints``)."""

    def validate(self, key: str, data: dict[str, Any]) -> None:
        """Return when the version passes; raise anything otherwise (``_NotFast``,
        ``ValidationError``...): the caller then validates it the ordinary way."""
        model = self.model
        instance = model.__new__(model)
        values = instance.__dict__
        values.update(self.base)
        for attname, f in self.dynamic:
            values[attname] = f.get_default()
        values["_state"] = ModelState()
        setters = self.setters
        for name, value in data.items():
            attname, convert = setters[name]
            values[attname] = value if convert is None or value is None else convert(value)
        values[self.key_attname] = key
        values["clean_fields"] = functools.partial(self._clean_fields, instance)
        instance.full_clean(
            exclude=list(self.exclude),
            validate_unique=False,
            validate_constraints=self.constraints,
        )

    def _clean_fields(self, instance: models.Model, exclude: Collection[str] | None = None) -> None:
        skip = exclude or ()
        values = instance.__dict__
        for name, attname, blank, empty, f, check in self.fields:
            if name in skip:
                continue
            raw = values[attname] if attname in values else getattr(instance, attname)
            if blank and raw in empty:
                continue
            if check is None:
                try:
                    setattr(instance, attname, f.clean(raw, instance))
                except ValidationError:
                    raise _NotFast from None
            elif not check(raw):
                raise _NotFast


@dataclass(frozen=True)
class _Compiled:
    names: frozenset[str]
    """Every name the wire form may carry (``ReplicatedModel.wire_field_names``)."""
    wire_problems: dict[str, Callable[[Any], str | None]]
    """Per wire field: its JSON type check (``_wire_type_problem``, ``_sensitive_problem``)."""
    checks: dict[str, Callable[[Any], str | None] | None]
    """Per name of ``names``: its check in ``wire_problems`` (``None``: a many-to-many field,
    not type-checked here); a name not in it is unknown (``_unknown``)."""
    key_check: TextCheck | None
    """The natural-key field's ``clean`` as a check (``None``: not a plain text field)."""
    fast: _FastModel | None
    """``None``: relations, sensitive or not plain fields, or the model's own
    ``clean_fields``: the ordinary path only. Unused while the model has a validation hook
    (checked per item: tests swap hooks)."""


_COMPILED: dict[registry.ReplicatedModel, _Compiled] = {}


def _compiled(rm: registry.ReplicatedModel) -> _Compiled:
    compiled = _COMPILED.get(rm)
    if compiled is None:
        model = rm.model
        key_field = model._meta.get_field(rm.natural_key_field)
        assert isinstance(key_field, models.Field)
        wire_problems: dict[str, Callable[[Any], str | None]] = {
            name: _sensitive_problem if name in rm.sensitive else _wire_type_check(f)
            for name, f in rm.field_map.items()
        }
        names = frozenset(rm.wire_field_names())
        compiled = _Compiled(
            names=names,
            wire_problems=wire_problems,
            checks={name: wire_problems.get(name) for name in names},
            key_check=_text_check(key_field),
            fast=_fast_model(rm),
        )
        _COMPILED[rm] = compiled
    return compiled


def _fast_model(rm: registry.ReplicatedModel) -> _FastModel | None:
    model = rm.model
    meta = model._meta
    if (
        rm.many_to_many
        or rm.sensitive
        or model.clean_fields is not models.Model.clean_fields
        or type(meta.pk) not in (models.AutoField, models.BigAutoField)
        or not all(registry.plain_column(f) for f in meta.concrete_fields if not f.primary_key)
        or any(f.is_relation for f in meta.fields)
    ):
        return None
    base: dict[str, Any] = {}
    dynamic: list[tuple[str, models.Field]] = []
    for f in meta.concrete_fields:
        if is_encrypted_field(f) and f.get_default() is not None:
            return None  # its descriptor would turn the default into pending plaintext
        if f.has_default() and callable(f.default):
            dynamic.append((f.attname, f))
        else:
            base[f.attname] = f.get_default()
    setters: dict[str, tuple[str, Callable[[Any], Any] | None]] = {}
    for name, f in rm.field_map.items():
        if is_encrypted_field(f):
            setters[name] = (f.attname, Ciphertext)
        elif isinstance(f, models.DateTimeField):
            setters[name] = (f.attname, f.to_python)
        else:
            # The wire type is checked first: to_python of a str for a text field, a bool for
            # a flag, an int for an integer, any JSON for a JSON field returns it unchanged.
            setters[name] = (f.attname, None)
    key_field = meta.get_field(rm.natural_key_field)
    return _FastModel(
        model=model,
        base=base,
        dynamic=tuple(dynamic),
        setters=setters,
        key_attname=key_field.attname,  # type: ignore[union-attr]
        fields=tuple(
            (f.name, f.attname, f.blank, f.empty_values, f, _text_check(f))
            for f in meta.fields
            if not f.generated and not f.primary_key
        ),
        exclude=tuple(rm.encrypted_field_names()),
        constraints=any(m._meta.constraints for m in (model, *meta.get_parent_list())),
    )


def _text_check(f: models.Field) -> TextCheck | None:
    """``f.clean(value, instance)`` of a text field (``CharField``/``TextField`` and subclasses
    that override none of it) as a predicate: true exactly when ``clean`` returns ``value``
    itself without raising. ``None`` for any other field, and for a validator it cannot mirror
    exactly (then that validator is called as ``clean`` would)."""
    if not isinstance(f, models.CharField | models.TextField):
        return None
    base = models.CharField if isinstance(f, models.CharField) else models.TextField
    cls = type(f)
    if any(getattr(cls, name) is not getattr(base, name) for name in ("to_python", "clean")):
        return None
    if any(
        getattr(cls, name) is not getattr(models.Field, name)
        for name in ("validate", "run_validators")
    ):
        return None
    empty = f.empty_values
    choices: frozenset[Any] | None = None
    if f.choices is not None:
        keys: list[Any] = []
        for option_key, option_value in f.choices:
            if isinstance(option_value, list | tuple):
                keys += [group_key for group_key, _ in option_value]
            else:
                keys.append(option_key)
        try:
            choices = frozenset(keys)
        except TypeError:
            return None
    limits: list[int] = []
    no_nul = False
    patterns: list[tuple[re.Pattern[str], bool]] = []
    others: list[Any] = []
    validators: list[Any] = list(f.validators)
    for validator in validators:
        kind = type(validator)
        if kind is django_validators.MaxLengthValidator and isinstance(validator.limit_value, int):
            limits.append(validator.limit_value)
        elif kind is django_validators.ProhibitNullCharactersValidator:
            no_nul = True
        elif kind is django_validators.RegexValidator:
            regex = validator.regex
            patterns.append((re.compile(regex.pattern, regex.flags), validator.inverse_match))
        else:
            others.append(validator)
    limit = min(limits) if limits else None
    editable, null, blank = f.editable, f.null, f.blank

    def check(value: Any) -> bool:
        if value is not None and type(value) is not str:
            return False  # to_python would convert it: not vouched for
        if editable:
            if choices is not None and value not in empty:
                if value not in choices:
                    return False
            else:
                if value is None and not null:
                    return False
                if not blank and value in empty:
                    return False
        if value in empty:
            return True
        assert isinstance(value, str)
        # The validators' own tests, in their own terms: MaxLengthValidator (len > limit),
        # ProhibitNullCharactersValidator ("\x00" in it), RegexValidator (search, inverse).
        if limit is not None and len(value) > limit:
            return False
        if no_nul and "\x00" in value:
            return False
        for pattern, inverse in patterns:
            if (pattern.search(value) is None) != inverse:
                return False
        for validator in others:
            try:
                validator(value)
            except ValidationError:
                return False
        return True

    return check


def _parse_version(
    rm: registry.ReplicatedModel, key: str, raw: dict[str, Any], bound: _Bound, what: str
) -> Version:
    stamp = bound.stamp(raw.get("hlc"), f"{what}hlc")
    origin: Any = raw.get("origin")
    _require(_is_node_id(origin), f"{what}origin must be a node id")
    deleted = raw.get("deleted")
    _require(isinstance(deleted, bool), f"{what}deleted must be a boolean")
    data = raw.get("data")
    if deleted:
        _require(data is None, f"{what}a tombstone carries no data")
        return Version(stamp, origin, True, None)
    return Version(stamp, origin, False, _validate_data(rm, key, data, bound))


def escaped(value: Any, limit: int) -> str:
    """``value`` as ASCII text (NUL, lone surrogates and other non-ASCII as ``\\u`` escapes),
    truncated to ``limit`` characters: storable on every backend, renderable as JSON."""
    text = value if isinstance(value, str) else "" if value is None else repr(value)
    return json.dumps(text, ensure_ascii=True)[1:-1][:limit]


def _check_item(item: Any, bound: _Bound) -> ParsedChange:
    """Validate one feed item; ``_Refused`` with every reason it cannot be stored."""
    _require(isinstance(item, dict), "item must be an object")
    label = item.get("model")
    _require(isinstance(label, str), "model must be a string")
    rm = bound.model(label)
    key = _check_key(rm, item.get("key"))
    version = _parse_version(rm, key, item, bound, "")
    _require(version.origin == version.hlc.node, "origin must be the node of the timestamp")
    vv = item.get("vv")
    _require(isinstance(vv, dict) and bool(vv), "vv must be a non-empty object")
    _require(len(vv) <= 1000, "vv has more than 1000 entries")
    for node, node_stamp in vv.items():
        _require(_is_node_id(node), "vv: every entry must be keyed by a node id")
        parsed = bound.stamp(node_stamp, f"vv entry {node}")
        _require(parsed.node == node, f"vv entry {node} is a timestamp of another node")
    # The item's own text of the version: it parsed, so it is the canonical form.
    _require(vv.get(version.hlc.node, "") >= item["hlc"], "vv does not include the version")
    raw_losers = item.get("losers", [])
    _require(isinstance(raw_losers, list), "losers must be a list")
    losers: list[Version] = []
    for position, raw in enumerate(raw_losers):
        _require(isinstance(raw, dict), "a loser must be an object")
        try:
            losers.append(_parse_version(rm, key, raw, bound, f"losers[{position}]."))
        except _Refused as refused:
            if any(reason.startswith(CLOCK_SKEW) for reason in refused.reasons):
                raise
            # A loser is only kept for review, never applied: one this node could not store
            # (e.g. relayed from a conflict kept before versions were validated) is left out
            # rather than holding back the version that beat it.
            logger.warning(
                "replication: not keeping loser %d of %s:%s: %s",
                position,
                rm.label,
                key,
                "; ".join(refused.reasons)[:300],
            )
    return ParsedChange(
        model=rm,
        key=key,
        version=version,
        vv=dict(vv),
        losers=losers,
        resolved=_parse_resolved(item.get("resolved", []), bound),
    )


def _parse_resolved(raw: Any, bound: _Bound) -> list[tuple[frozenset[str], str]]:
    _require(isinstance(raw, list), "resolved must be a list")
    notes: list[tuple[frozenset[str], str]] = []
    for note in raw:
        versions = note.get("versions") if isinstance(note, dict) else None
        chosen = note.get("chosen") if isinstance(note, dict) else None
        _require(
            isinstance(versions, list) and len(versions) == 2,
            "resolved: each note needs two version timestamps and the chosen one",
        )
        assert isinstance(versions, list)
        for text in [*versions, chosen]:
            bound.stamp(text, "resolved")
        _require(chosen in versions, "resolved: the chosen timestamp must be one of the versions")
        notes.append((frozenset(versions), str(chosen)))
    return notes


@dataclass(frozen=True)
class Held:
    """An item this node does not apply now: quarantined with ``reason``."""

    item: Any
    reason: str


@dataclass(frozen=True)
class PreChecked:
    """``changes_check(changes)`` computed ahead of applying ``changes`` (another thread: see
    :func:`changes_precheck`), with what it depended on. ``changes_apply(checked=...)`` uses
    ``items`` only while :meth:`holds` for the same list; otherwise it checks again."""

    changes: list[Any]
    items: list[ParsedChange | Held]
    state: tuple[object, ...]

    def holds(self, changes: Any) -> bool:
        """Whether ``items`` is what checking ``changes`` now would give: the same list, the
        same settings, registry (validation hooks included) and keyring."""
        return changes is self.changes and self.state == _check_state()


def _check_state() -> tuple[object, ...]:
    # A sensitive value's token is verified with the keyring (a test may swap it).
    return (settings_state(), registry.validation_state(), keyring_built())


class _DatabaseUsed(Exception):
    """Checking a batch ahead tried to reach the database (see :func:`changes_precheck`)."""


@contextlib.contextmanager
def _database_refused(touched: list[bool]) -> Iterator[None]:
    """Refuse every database access in this thread (connecting or executing, on any alias):
    each attempt raises ``_DatabaseUsed`` and sets ``touched[0]``, even when the code that
    tried catches the exception."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        touched[0] = True
        raise _DatabaseUsed("checked ahead: no database access")

    guarded = list(connections.all(initialized_only=False))
    with contextlib.ExitStack() as stack:
        for wrapper in guarded:
            wrapper.ensure_connection = refuse  # type: ignore[method-assign]
            stack.callback(wrapper.__dict__.pop, "ensure_connection", None)
            stack.enter_context(wrapper.execute_wrapper(refuse))
        yield


def changes_precheck(changes: list[Any]) -> PreChecked | None:
    """``changes_check(changes)`` ahead of applying them, in a thread that must not reach the
    database (the puller checks page n+1 while page n applies): ``None`` — check when
    applying — when the batch itself is refused (``ChangeValidationError``: raised again then),
    anything fails, an item's validation tried to reach the database (a hook or a relation
    that reads rows: its verdict may depend on the pages applied before it), or an item is
    held for clock skew (the bound is judged when applying). No database access is made."""
    state = _check_state()
    touched = [False]
    try:
        with _database_refused(touched):
            items = changes_check(changes)
    except Exception:
        return None
    if touched[0] or any(
        isinstance(item, Held) and item.reason.startswith(CLOCK_SKEW) for item in items
    ):
        return None
    return PreChecked(changes, items, state)


def changes_check(changes: Any) -> list[ParsedChange | Held]:
    """Check a batch: one entry per item, the parsed change or why it is held.

    Raises ``ChangeValidationError`` only for the batch itself (not a list, more than
    ``MAX_PUSH_BATCH`` items). Each item must name a registered model and a key its natural-key
    field accepts, at most once per batch; carry an origin that is the node of its timestamp; a
    version vector of node ids to their own timestamps that includes the version; losers and
    ``resolved`` notes of the same shape; and data that passes exactly the validation of a local
    write of that record (types, sizes, characters, key, the kind's rules, ciphertext bound to the
    record when this node holds the key — see ``registry.ReplicatedModel.validate``). Every HLC
    field (version, vector entries, losers, notes) must be at most ``MAX_CLOCK_SKEW_SECONDS``
    ahead of this node's physical clock; beyond it the item is held for clock skew.
    """
    if not isinstance(changes, list):
        raise ChangeValidationError([{"index": -1, "reason": "changes must be a list"}])
    limit = app_settings.MAX_PUSH_BATCH
    if len(changes) > limit:
        raise ChangeValidationError(
            [{"index": -1, "reason": f"batch of {len(changes)} exceeds the maximum of {limit}"}]
        )
    bound = _Bound.now()
    checked: list[ParsedChange | Held] = []
    seen: set[tuple[str, str]] = set()
    for item in changes:
        try:
            change = _check_item(item, bound)
            ident = (change.model.label, change.key)
            _require(ident not in seen, "the batch names this record twice")
            seen.add(ident)
        except _Refused as refused:
            checked.append(Held(item, "; ".join(refused.reasons)[:2000]))
        else:
            checked.append(change)
    return checked
