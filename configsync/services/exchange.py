"""Export, import and run: system settings to and from stdout, files and a child's environment.

Three formats carry the same records:

* ``json`` — a list of objects with the API's field names (``key``, ``value`` typed by
  ``value_type``, ``value_type``, ``is_sensitive``, ``category``, ``description``);
* ``yaml`` — the same list in YAML (PyYAML, safe dump/load);
* ``env`` — ``KEY=value`` lines in the canonical text of each value, quoted by the .env bridge's
  writer (``configsync.envbridge.envfile``) so that python-dotenv and the bridge read them back
  exactly. The env format carries values only: an import keeps an existing record's type,
  category and sensitivity, and a new record is a ``str`` whose sensitivity the secret rule
  (``configsync.sensitivity``) decides — as it does for a json/yaml entry without
  ``is_sensitive``.

A sensitive value is exported as :data:`~configsync.logging.MASK` unless ``reveal``; a reveal is
audited (one ``AuditEvent`` per revealed record, written before the text is returned). Who may
reveal is the caller's business (the CLI: ``configsync.cli.exchange``). An import never stores
the mask: an entry whose value is ``********`` is skipped and reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from configsync.actor import IMPORT, acting
from configsync.envbridge.envfile import NAME_RE, EnvDocument, format_assignment
from configsync.envbridge.errors import EnvSyntaxError
from configsync.logging import MASK
from configsync.models import SystemConfig
from configsync.selectors.system_config import system_config_list
from configsync.sensitivity import sensitivity_decide
from configsync.services.audit import audit_reveals
from configsync.services.system_config import system_config_set

Format = Literal["env", "json", "yaml"]
FORMATS: tuple[Format, ...] = ("env", "json", "yaml")
FIELDS = ("key", "value", "value_type", "is_sensitive", "category", "description")
"""The fields of one exported setting: the REST API's names (CONTRACT.md)."""


class ExchangeError(ValidationError):
    """A file cannot be imported (syntax, shape or a value that does not validate); nothing was
    changed. The message names the line (or entry) and never holds a value."""


def _entry(record: SystemConfig, *, reveal: bool) -> dict[str, Any]:
    if record.is_sensitive and not reveal:
        value: Any = MASK if record.has_value else None
    elif not record.has_value:
        value = None
    else:
        typed, problem = record.typed_value_or_problem()
        value = record.raw_value() if problem else typed
    return {
        "key": record.key,
        "value": value,
        "value_type": record.value_type,
        "is_sensitive": record.is_sensitive,
        "category": record.category,
        "description": record.description,
    }


def _revealed(records: Iterable[SystemConfig], *, reveal: bool) -> list[SystemConfig]:
    """The sensitive records with a value that ``reveal`` shows (decrypted first: a value that
    cannot be read is not a reveal)."""
    if not reveal:
        return []
    shown = [r for r in records if r.is_sensitive and r.has_value]
    for record in shown:
        record.raw_value()
    return shown


def config_export(
    *, fmt: Format = "json", category: str | None = None, reveal: bool = False, actor: str = ""
) -> str:
    """The settings (of ``category``, else all) as text in ``fmt``; sensitive values masked
    unless ``reveal``, each reveal audited for ``actor`` before the text is returned.

    ``ValidationError`` when ``fmt`` is unknown or, for ``env``, a key is not a variable name.
    """
    if fmt not in FORMATS:
        raise ValidationError({"format": f"Choose one of {', '.join(FORMATS)}."})
    records = list(system_config_list(category=category))
    revealed = _revealed(records, reveal=reveal)
    if fmt == "env":
        bad = [r.key for r in records if not NAME_RE.fullmatch(r.key)]
        if bad:
            raise ValidationError(
                {
                    "format": f"These keys are not variable names: {', '.join(bad)}. "
                    "Use json or yaml."
                }
            )
        lines = []
        for record in records:
            if record.is_sensitive and not reveal:
                text = MASK if record.has_value else ""
            else:
                text = record.raw_value()
            lines.append(format_assignment(record.key, text))
        text = "".join(lines)
    else:
        entries = [_entry(r, reveal=reveal) for r in records]
        if fmt == "json":
            text = json.dumps(entries, indent=2, ensure_ascii=False) + "\n"
        else:
            text = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)
    if revealed:
        audit_reveals(actor=actor or "unknown", instances=revealed)
    return text


@dataclass(frozen=True)
class ImportEntry:
    """One setting read from a file: ``line`` is where it starts (1-based)."""

    line: int
    key: str
    value: Any
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ImportReport:
    """What an import changed (or, dry, would change). ``skipped``: ``(line, key, reason)``."""

    dry_run: bool
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would apply" if self.dry_run else "applied"
        return (
            f"{verb}: {len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": [{"line": n, "key": k, "reason": r} for n, k, r in self.skipped],
        }


def _fail(line: int, message: str) -> ExchangeError:
    return ExchangeError(f"line {line}: {message}; nothing was changed")


def _parse_env(text: str, path: str) -> list[ImportEntry]:
    try:
        document = EnvDocument.parse(text, path=path)
    except EnvSyntaxError as exc:
        line, reason = exc.problems[0]
        raise _fail(line, reason) from None
    last: dict[str, ImportEntry] = {}
    for entry in document.entries:
        if entry.name is not None:
            assert entry.value is not None
            last[entry.name] = ImportEntry(line=entry.line, key=entry.name, value=entry.value)
    return list(last.values())


def _entries_from(items: list[tuple[int, Any]]) -> list[ImportEntry]:
    result = []
    for line, item in items:
        if not isinstance(item, dict):
            raise _fail(line, "each entry must be an object with 'key' and 'value'")
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            raise _fail(line, f"unknown field(s) {', '.join(map(str, unknown))}")
        if not isinstance(item.get("key"), str) or "value" not in item:
            raise _fail(line, "each entry needs 'key' (text) and 'value'")
        fields = {k: v for k, v in item.items() if k not in ("key", "value")}
        result.append(ImportEntry(line=line, key=item["key"], value=item["value"], fields=fields))
    return result


def _parse_json(text: str) -> list[ImportEntry]:
    decoder = json.JSONDecoder()

    def line_at(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n\ufeff":
            pos += 1
        return pos

    pos = skip(0)
    if pos >= len(text) or text[pos] != "[":
        raise _fail(line_at(pos), "expected a JSON list of settings")
    items: list[tuple[int, Any]] = []
    pos = skip(pos + 1)
    if pos < len(text) and text[pos] == "]":
        pos += 1
    else:
        while True:
            try:
                item, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise _fail(exc.lineno, exc.msg) from None
            items.append((line_at(pos), item))
            pos = skip(end)
            if pos < len(text) and text[pos] == ",":
                pos = skip(pos + 1)
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            raise _fail(line_at(pos), "expected ',' or ']'")
    if skip(pos) != len(text):
        raise _fail(line_at(skip(pos)), "text after the list")
    return _entries_from(items)


def _parse_yaml(text: str) -> list[ImportEntry]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _fail(mark.line + 1 if mark else 1, str(exc.problem or exc.context)) from None
    except yaml.YAMLError as exc:
        raise _fail(1, type(exc).__name__) from None
    if data is None:
        return []
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise _fail(1, "expected a YAML list of settings")
    lines = [child.start_mark.line + 1 for child in node.value]
    return _entries_from(list(zip(lines, data, strict=True)))


def config_import_parse(*, text: str, fmt: Format, path: str = "") -> list[ImportEntry]:
    """The entries of ``text`` in ``fmt``; :class:`ExchangeError` naming the first bad line."""
    if fmt == "env":
        return _parse_env(text, path)
    if fmt == "json":
        return _parse_json(text)
    if fmt == "yaml":
        return _parse_yaml(text)
    raise ValidationError({"format": f"Choose one of {', '.join(FORMATS)}."})


def _describe_error(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items())
    return " ".join(exc.messages)


def config_import(
    *, text: str, fmt: Format, path: str = "", dry_run: bool = False, actor: str = ""
) -> ImportReport:
    """Apply the settings in ``text`` (``fmt``) in one transaction: every entry is validated by
    ``system_config_set`` and the first invalid one rolls everything back (:class:`ExchangeError`
    naming its line and key, never its value). ``dry_run`` validates the same way and always
    rolls back. A masked value (``********``) is never stored: the entry is skipped and listed
    in the report. A sensitive record is never made plain by an import (that needs the reveal
    right, ``RevealRequired`` otherwise)."""
    entries = config_import_parse(text=text, fmt=fmt, path=path)
    report = ImportReport(dry_run=dry_run)
    with transaction.atomic(), acting(via=IMPORT):
        for entry in entries:
            if entry.value == MASK:
                report.skipped.append(
                    (entry.line, entry.key, "the value is masked (export with --reveal)")
                )
                continue
            if entry.value is None:
                report.skipped.append((entry.line, entry.key, "no value"))
                continue
            current = SystemConfig.objects.filter(key=entry.key).first()
            before = _entry(current, reveal=True) if current is not None else None
            is_sensitive = entry.fields.get("is_sensitive")
            if is_sensitive is None and current is None:
                is_sensitive = sensitivity_decide(key=entry.key, value=entry.value).sensitive
            try:
                record = system_config_set(
                    key=entry.key,
                    value=entry.value,
                    value_type=entry.fields.get("value_type"),
                    is_sensitive=is_sensitive,
                    category=entry.fields.get("category"),
                    description=entry.fields.get("description"),
                    actor=actor,
                )
            except ValidationError as exc:
                raise _fail(entry.line, f"{entry.key}: {_describe_error(exc)}") from None
            if before is None:
                report.created.append(entry.key)
            elif _entry(record, reveal=True) == before:
                report.unchanged.append(entry.key)
            else:
                report.updated.append(entry.key)
        if dry_run:
            transaction.set_rollback(True)
    return report


def config_environment(
    *, category: str | None = None, include_sensitive: bool, actor: str = ""
) -> dict[str, str]:
    """The settings (of ``category``, else all) as environment variables: the canonical text of
    each value under its key. Sensitive ones only with ``include_sensitive`` (each audited as a
    reveal for ``actor``); a setting without a value is left out."""
    records = [
        r
        for r in system_config_list(category=category)
        if r.has_value and (include_sensitive or not r.is_sensitive)
    ]
    revealed = _revealed(records, reveal=include_sensitive)
    environment = {record.key: record.raw_value() for record in records}
    bad = [key for key, value in environment.items() if "\x00" in value]
    if bad:
        raise ValidationError(
            {"value": f"These values hold a NUL character, which no environment can: {bad}"}
        )
    if revealed:
        audit_reveals(actor=actor or "unknown", instances=revealed)
    return environment
