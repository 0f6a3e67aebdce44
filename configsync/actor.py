"""Who is acting in this thread or task, and through which entry point: the audit trail's actor.

Every change of a replicated record is recorded in the history and the audit trail at the one
place it happens (``configsync.replication.services.history``), far below the view, command or
task that caused it. The entry points say who is acting with :func:`acting`; the recorder asks
:func:`acting_now`. Nothing is passed through the services' signatures for it.

``actor`` names the caller (``user:<username>``, ``api-key:<name> (<prefix>)``, ``cli:<os user>``,
``peer:<name>``, ``system``); ``via`` is the entry point, one of :data:`VIAS`. Entry points:

* HTTP: ``configsync.middleware.ActorMiddleware`` (admin pages ``via="admin"``, the rest
  ``via="api"``), resolved lazily so DRF's authentication (API keys) has run by the time a change
  is recorded;
* the command line: the ``configsync`` management command (``via="cli"``);
* replication: changes applied from a peer are recorded as ``peer:<name>`` / ``via="peer"`` by
  the apply path itself;
* the ``.env`` bridge, restore, rollback, conflict resolution and import wrap their writes in
  ``acting(via=...)``, keeping the actor of the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

ADMIN = "admin"
API = "api"
CLI = "cli"
PEER = "peer"
ENVBRIDGE = "envbridge"
RESTORE = "restore"
ROLLBACK = "rollback"
RESOLVE = "resolve"
IMPORT = "import"
SYSTEM = "system"
VIAS = (ADMIN, API, CLI, PEER, ENVBRIDGE, RESTORE, ROLLBACK, RESOLVE, IMPORT, SYSTEM)


@dataclass(frozen=True)
class Acting:
    """Who acts (``actor``) and through which entry point (``via``)."""

    actor: str
    via: str


NOBODY = Acting(actor="system", via=SYSTEM)

_acting: ContextVar[Acting | Callable[[], Acting] | None] = ContextVar(
    "configsync_acting", default=None
)


def acting_now() -> Acting:
    """The innermost :func:`acting` (or lazy resolver) in effect; :data:`NOBODY` outside any."""
    current = _acting.get()
    if current is None:
        return NOBODY
    if callable(current):
        return current()
    return current


@contextmanager
def acting(*, actor: str | None = None, via: str | None = None) -> Iterator[Acting]:
    """Run the block as ``actor`` through ``via``; either left out keeps the enclosing one."""
    outer = acting_now()
    inner = Acting(actor=(actor or outer.actor)[:200], via=via or outer.via)
    token = _acting.set(inner)
    try:
        yield inner
    finally:
        _acting.reset(token)


@contextmanager
def acting_lazily(resolve: Callable[[], Acting]) -> Iterator[None]:
    """Like :func:`acting`, with the actor worked out only when a change asks for it (HTTP:
    DRF authenticates inside the view, after the middleware has run)."""
    token = _acting.set(resolve)
    try:
        yield
    finally:
        _acting.reset(token)
