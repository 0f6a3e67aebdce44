"""Per-model hooks run just before a received version is saved through its model.

A model whose invariants span several rows (``AIProviderConfig``: at most one default provider)
can meet a received version that is valid alone but collides with a local row — two nodes each
made a different provider the default. Without a hook the save fails, the whole batch is retried
and refused, and replication with that peer stops. A hook restores the invariant with ordinary
local writes (which replicate like any other change), so every node converges.

``register_before_apply(label, hook)``, called by the model's app in its ``ready()`` (providers
registers ``ai_provider_default_claim``); the hook gets the unsaved instance carrying the
received version and runs inside the applying transaction, outside ``applying_remote()``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import models

BeforeApply = Callable[[models.Model], None]
_hooks: dict[str, BeforeApply] = {}


def register_before_apply(label: str, hook: BeforeApply) -> None:
    _hooks[label.lower()] = hook


def before_apply(label: str) -> BeforeApply | None:
    return _hooks.get(label.lower())
