"""The strategy matrix: how each data type syncs under each deployment mode.

A row per data type (``registry.data_types()``): ``sync_enabled``, ``directions``
(``local_to_external``: this node's changes go out; ``external_to_local``: the external side's
changes are applied here), ``interval_seconds`` and ``strategy`` (``full_duplex``,
``backup_only``: written out, never read back automatically).

Defaults: critical types (users, system config, AI providers) sync full-duplex in every
mode but ``LOCAL_ONLY``; other types sync full-duplex with an external peer or database
(``LOCAL_EXTERNAL``, ``LOCAL_EXTERNAL_R2``) and are only backed up to the bucket in
``LOCAL_R2``. ``LOCAL_ONLY`` syncs nothing, whatever the overrides say. Every row's interval is
``CONFIGSYNC_SYNC_INTERVAL_SECONDS`` by default: the beat still runs one cycle per interval for
every type; a per-type schedule comes with the bucket and database transports.

``CONFIGSYNC_SYNC_STRATEGIES`` overrides rows per data type in every mode but ``LOCAL_ONLY``:
``{"templates": {"sync_enabled": False}, "projects": {"directions": ["local_to_external"]}}``.
A bad override is a system check error (``override_errors``). Pure functions: no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

LOCAL_TO_EXTERNAL = "local_to_external"
EXTERNAL_TO_LOCAL = "external_to_local"
DIRECTIONS = (LOCAL_TO_EXTERNAL, EXTERNAL_TO_LOCAL)
FULL_DUPLEX = "full_duplex"
BACKUP_ONLY = "backup_only"
STRATEGIES = (FULL_DUPLEX, BACKUP_ONLY)
OVERRIDE_KEYS = ("sync_enabled", "directions", "interval_seconds", "strategy")
MAX_INTERVAL_SECONDS = 86400


@dataclass(frozen=True)
class StrategyRow:
    """One data type's row of the matrix under one mode."""

    data_type: str
    critical: bool
    sync_enabled: bool
    directions: tuple[str, ...]
    interval_seconds: int
    strategy: str

    def allows(self, direction: str) -> bool:
        """Whether changes of this type travel in ``direction``."""
        return self.sync_enabled and direction in self.directions

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["directions"] = list(self.directions)
        return data


def default_row(*, data_type: str, critical: bool, mode: str, interval: int) -> StrategyRow:
    """The row ``data_type`` gets under ``mode`` before overrides."""
    if mode == "LOCAL_ONLY":
        return StrategyRow(data_type, critical, False, (), interval, FULL_DUPLEX)
    if mode == "LOCAL_R2" and not critical:
        return StrategyRow(data_type, critical, True, (LOCAL_TO_EXTERNAL,), interval, BACKUP_ONLY)
    return StrategyRow(data_type, critical, True, DIRECTIONS, interval, FULL_DUPLEX)


def override_errors(overrides: Any, known: Mapping[str, bool] | None) -> list[str]:
    """Every problem of ``CONFIGSYNC_SYNC_STRATEGIES`` (``known``: the registered data types,
    ``None`` to skip that test), one message each, naming the data type and the bad part."""
    if not isinstance(overrides, Mapping):
        return ["CONFIGSYNC_SYNC_STRATEGIES must be a mapping of data type to overrides"]
    errors: list[str] = []
    for data_type, override in overrides.items():
        where = f"CONFIGSYNC_SYNC_STRATEGIES[{data_type!r}]"
        if known is not None and data_type not in known:
            errors.append(
                f"{where}: unknown data type {data_type!r} (known: {', '.join(sorted(known))})"
            )
            continue
        if not isinstance(override, Mapping):
            errors.append(f"{where} must be a mapping of {', '.join(OVERRIDE_KEYS)}")
            continue
        for key in override:
            if key not in OVERRIDE_KEYS:
                errors.append(f"{where}: unknown option {key!r} ({', '.join(OVERRIDE_KEYS)})")
        if "sync_enabled" in override and not isinstance(override["sync_enabled"], bool):
            errors.append(f"{where}: sync_enabled must be true or false")
        directions = override.get("directions", ())
        if not isinstance(directions, (list, tuple)):
            errors.append(f"{where}: directions must be a list of {', '.join(DIRECTIONS)}")
            directions = ()
        for direction in directions:
            if direction not in DIRECTIONS:
                errors.append(f"{where}: unknown direction {direction!r} ({', '.join(DIRECTIONS)})")
        strategy = override.get("strategy")
        if "strategy" in override and strategy not in STRATEGIES:
            errors.append(f"{where}: unknown strategy {strategy!r} ({', '.join(STRATEGIES)})")
        if strategy == BACKUP_ONLY and EXTERNAL_TO_LOCAL in directions:
            errors.append(f"{where}: backup_only is never read back ({EXTERNAL_TO_LOCAL})")
        if "interval_seconds" in override:
            value = override["interval_seconds"]
            if not (
                isinstance(value, int)
                and not isinstance(value, bool)
                and 1 <= value <= MAX_INTERVAL_SECONDS
            ):
                errors.append(
                    f"{where}: interval_seconds must be a whole number from 1 to "
                    f"{MAX_INTERVAL_SECONDS}"
                )
    return errors


def effective_row(
    *, data_type: str, critical: bool, mode: str, interval: int, override: Mapping[str, Any]
) -> StrategyRow:
    """The default row with ``override`` applied (``LOCAL_ONLY`` ignores overrides)."""
    row = default_row(data_type=data_type, critical=critical, mode=mode, interval=interval)
    if mode == "LOCAL_ONLY" or not override:
        return row
    strategy = override.get("strategy", row.strategy)
    directions = tuple(override.get("directions", row.directions))
    if strategy == BACKUP_ONLY and "directions" not in override:
        directions = (LOCAL_TO_EXTERNAL,)
    return StrategyRow(
        data_type=data_type,
        critical=critical,
        sync_enabled=bool(override.get("sync_enabled", row.sync_enabled)),
        directions=tuple(d for d in DIRECTIONS if d in directions),
        interval_seconds=int(override.get("interval_seconds", row.interval_seconds)),
        strategy=strategy,
    )


def matrix(
    *, mode: str, data_types: Mapping[str, bool], interval: int, overrides: Any
) -> dict[str, StrategyRow]:
    """Every data type's effective row under ``mode``; a bad ``overrides`` (see
    ``override_errors``, also a system check error) is ignored whole, never half-applied."""
    usable = not override_errors(overrides, data_types)
    return {
        name: effective_row(
            data_type=name,
            critical=critical,
            mode=mode,
            interval=interval,
            override=overrides.get(name, {}) if usable else {},
        )
        for name, critical in sorted(data_types.items())
    }


MODE_TRANSPORTS: dict[str, tuple[str, ...]] = {
    "LOCAL_ONLY": (),
    "LOCAL_EXTERNAL": ("http", "database"),
    "LOCAL_R2": ("bucket",),
    "LOCAL_EXTERNAL_R2": ("http", "database", "bucket"),
}
"""The transports (``Peer.transport`` kinds) a cycle uses in each mode: ``LOCAL_EXTERNAL`` pairs
with other nodes over HTTP and with a shared external database, ``LOCAL_R2``'s only remote is the
bucket, ``LOCAL_EXTERNAL_R2`` uses all three."""

R2_SETTINGS = (
    "CONFIGSYNC_R2_ENDPOINT_URL",
    "CONFIGSYNC_R2_BUCKET",
    "CONFIGSYNC_R2_ACCESS_KEY_ID",
    "CONFIGSYNC_R2_SECRET_ACCESS_KEY",
)


NATS_TRANSPORT = "nats"
"""Not in ``MODE_TRANSPORTS``: it joins every mode but ``LOCAL_ONLY`` when ``CONFIGSYNC_NATS_URL``
is set (``transports_of``)."""


def transports_of(mode: str, *, nats: bool) -> tuple[str, ...]:
    """The transports a cycle uses in ``mode``: ``MODE_TRANSPORTS``, plus ``nats`` in every mode
    but ``LOCAL_ONLY`` when ``nats`` (``CONFIGSYNC_NATS_URL`` is set)."""
    kinds = MODE_TRANSPORTS.get(mode, ())
    if nats and mode in MODE_TRANSPORTS and mode != "LOCAL_ONLY":
        kinds = (*kinds, NATS_TRANSPORT)
    return kinds


def uses_bucket(mode: str) -> bool:
    """Whether ``mode`` needs the object-storage transport."""
    return "bucket" in MODE_TRANSPORTS.get(mode, ())


def transport_problems(
    mode: str,
    *,
    bucket: dict[str, bool],
    external_database: bool,
    http_peers: bool,
    nats: bool = False,
) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` about the transports ``mode`` needs.

    ``bucket``: which ``CONFIGSYNC_R2_*`` settings are set; a bucket mode without all of them is
    an error naming the first missing one. ``LOCAL_EXTERNAL`` (and ``LOCAL_EXTERNAL_R2``) with
    neither an HTTP peer nor ``EXTERNAL_DATABASE_URL`` is a warning: peers can still be added in
    the admin, and until then nothing external syncs. ``nats`` (``CONFIGSYNC_NATS_URL`` set)
    is an external side too.
    """
    errors: list[str] = []
    warnings: list[str] = []
    external_database = external_database or nats
    if uses_bucket(mode):
        missing = [name for name in R2_SETTINGS if not bucket.get(name)]
        if missing:
            errors.append(f"{mode} needs {missing[0]} (object storage transport), which is not set")
    if mode in ("LOCAL_EXTERNAL", "LOCAL_EXTERNAL_R2") and not (http_peers or external_database):
        warnings.append(
            f"{mode} has no external side: set CONFIGSYNC_PEERS (or add a peer in the admin) "
            "or EXTERNAL_DATABASE_URL"
        )
    return errors, warnings
