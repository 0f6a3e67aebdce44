"""The snapshot document: build the envelope, checksum, serialize, parse and validate.

The format is described in the package docstring (``configsync.snapshots``). Parsing never
trusts the input: size and nesting are capped before decoding, every member's shape is checked,
and the checksum is verified over the canonical form of what was decoded. Every refusal is a
:class:`SnapshotError` whose message names the rule (and a record's model and key), never a value.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from configsync.conf import app_settings
from configsync.crypto.errors import ConfigsyncError
from configsync.validation import json_depth_exceeds, value_problem

FORMAT = "configsync-snapshot/1"
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024
"""The largest snapshot restore or promote reads (a bigger file is refused before decoding)."""
ENVELOPE_DEPTH = 4
"""Nesting the envelope adds above a record's values (document, records, record, data)."""
RECORD_FIELDS = frozenset(
    {"model", "key", "hlc", "origin", "version_vector", "deleted", "data", "placeholders"}
)
TOP_FIELDS = frozenset(
    {
        "format",
        "node_id",
        "group_id",
        "created_at",
        "key_ids",
        "promoted",
        "data_types",
        "records",
        "checksum",
        "promotion",
    }
)


class SnapshotError(ConfigsyncError):
    """A snapshot cannot be written, read, restored or promoted; nothing was changed. The
    message says why and never holds a value."""


def canonical(document: dict[str, Any]) -> bytes:
    """The canonical JSON of ``document`` without its checksum: the bytes the checksum covers."""
    body = {name: value for name, value in document.items() if name != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checksum_of(document: dict[str, Any]) -> str:
    """``sha256:<hex>`` of :func:`canonical`."""
    return "sha256:" + hashlib.sha256(canonical(document)).hexdigest()


def document_seal(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with its ``checksum`` set."""
    return {**document, "checksum": checksum_of(document)}


def document_dumps(document: dict[str, Any]) -> bytes:
    """The file's bytes: indented JSON with sorted keys, UTF-8, a final newline."""
    return (json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def file_write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600: a temporary file in the same folder,
    fsynced, then renamed over ``path``; a failure leaves any previous file untouched."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise SnapshotError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise SnapshotError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


def file_read(path: Path) -> bytes:
    """The bytes of a snapshot file, refusing one larger than ``MAX_SNAPSHOT_BYTES``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SNAPSHOT_BYTES + 1)
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")
    return data


def _record_where(index: int, record: Any) -> str:
    if isinstance(record, dict) and isinstance(record.get("model"), str):
        key = record.get("key")
        if isinstance(key, str):
            return f"record {index} ({record['model'][:100]} {key[:255]!r})"
    return f"record {index}"


def _check_record(index: int, record: Any, *, promoted: bool) -> None:
    where = _record_where(index, record)
    if not isinstance(record, dict):
        raise SnapshotError(f"malformed snapshot: {where} is not an object")
    missing = sorted(RECORD_FIELDS - {"placeholders"} - set(record))
    unknown = sorted(set(record) - RECORD_FIELDS)
    if missing or unknown:
        problem = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(unknown)}"
        raise SnapshotError(f"malformed snapshot: {where} {problem}")
    for name in ("model", "key", "hlc", "origin"):
        if not isinstance(record[name], str) or not record[name]:
            raise SnapshotError(f"malformed snapshot: {where}: {name} must be a non-empty text")
    vector = record["version_vector"]
    if not isinstance(vector, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in vector.items()
    ):
        raise SnapshotError(f"malformed snapshot: {where}: version_vector must map texts")
    if not isinstance(record["deleted"], bool):
        raise SnapshotError(f"malformed snapshot: {where}: deleted must be true or false")
    data = record["data"]
    if record["deleted"] and data is not None:
        raise SnapshotError(f"malformed snapshot: {where}: a tombstone carries no data")
    if not record["deleted"] and not isinstance(data, dict):
        raise SnapshotError(f"malformed snapshot: {where}: data must be an object")
    placeholders = record.get("placeholders")
    if placeholders is not None:
        if not promoted:
            raise SnapshotError(
                f"malformed snapshot: {where}: only a promoted snapshot carries placeholders"
            )
        if not isinstance(placeholders, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in placeholders.items()
        ):
            raise SnapshotError(f"malformed snapshot: {where}: placeholders must map texts")


def document_loads(data: bytes) -> dict[str, Any]:
    """Parse and validate a snapshot document (shape and checksum; not group or keys, which
    are a restoring node's business: ``services.restore_refusals``)."""
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SnapshotError("malformed snapshot: not UTF-8 text") from None
    if json_depth_exceeds(text, int(app_settings.MAX_JSON_DEPTH) + ENVELOPE_DEPTH):
        raise SnapshotError("malformed snapshot: JSON nested too deeply")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise SnapshotError("malformed snapshot: not JSON") from None
    if not isinstance(document, dict):
        raise SnapshotError("malformed snapshot: not a JSON object")
    # No node stores a NUL or a lone surrogate (``configsync.validation``): a document holding
    # one was not written by a node, its checksum cannot even be computed (UTF-8), and a restore
    # would meet it as a database error instead of this reason.
    problem = value_problem(document)
    if problem:
        raise SnapshotError(f"malformed snapshot: a text {problem}")
    if document.get("format") != FORMAT:
        raise SnapshotError(f"unknown snapshot format (this node reads {FORMAT})")
    missing = sorted(TOP_FIELDS - {"promotion"} - set(document))
    unknown = sorted(set(document) - TOP_FIELDS)
    if missing or unknown:
        problem = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(unknown)}"
        raise SnapshotError(f"malformed snapshot: the document {problem}")
    if not isinstance(document["checksum"], str) or document["checksum"] != checksum_of(document):
        raise SnapshotError("the snapshot's checksum does not match its content (damaged?)")
    promoted = document["promoted"]
    if not isinstance(promoted, bool):
        raise SnapshotError("malformed snapshot: promoted must be true or false")
    if not isinstance(document["node_id"], str) or not isinstance(document["created_at"], str):
        raise SnapshotError("malformed snapshot: node_id and created_at must be texts")
    group = document["group_id"]
    if not (isinstance(group, str) and group) and not (promoted and group is None):
        raise SnapshotError("malformed snapshot: group_id must be a text")
    for name in ("key_ids", "data_types"):
        value = document[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SnapshotError(f"malformed snapshot: {name} must be a list of texts")
    records = document["records"]
    if not isinstance(records, list):
        raise SnapshotError("malformed snapshot: records must be a list")
    seen: set[tuple[str, str]] = set()
    for index, record in enumerate(records):
        _check_record(index, record, promoted=promoted)
        identity = (record["model"].lower(), record["key"])
        if identity in seen:
            raise SnapshotError(f"malformed snapshot: {_record_where(index, record)} appears twice")
        seen.add(identity)
    return document
