"""The crypto subsystem's receivers, connected by :func:`signals_connect` from
``ConfigsyncConfig.ready()``: the cached keyring is dropped when a key setting changes
(``override_settings`` in tests, ``setting_changed``)."""

from __future__ import annotations

from django.core.signals import setting_changed

from configsync.crypto.keyring import keyring_on_setting_changed


def signals_connect() -> None:
    """Connect the crypto subsystem's receivers (idempotent: each has a ``dispatch_uid``)."""
    setting_changed.connect(keyring_on_setting_changed, dispatch_uid="configsync.crypto.keyring")
