"""Telling ``CONFIGSYNC_DATA_CALLBACK_URL`` of changes: ids, never values."""

from __future__ import annotations

import requests

from configsync.conf import app_settings
from configsync.services.node import node_id


def data_callback_payload(
    *, model_label: str, natural_key: str, seq: int | None, deleted: bool
) -> dict[str, object]:
    """The JSON body for one change. It names the record; it never carries a value."""
    return {
        "event": "change",
        "node_id": node_id(),
        "model": model_label,
        "natural_key": natural_key,
        "seq": seq,
        "deleted": bool(deleted),
    }


def data_callback_send(
    *, url: str, model_label: str, natural_key: str, seq: int | None, deleted: bool
) -> None:
    """POST one change's ids to ``url``; raises ``requests.RequestException`` unless 2xx.

    The error message names the status code only (never the URL, which may carry credentials).
    """
    body = data_callback_payload(
        model_label=model_label, natural_key=natural_key, seq=seq, deleted=deleted
    )
    try:
        response = requests.post(url, json=body, timeout=app_settings.PEER_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise requests.RequestException(f"callback unreachable ({type(exc).__name__})") from None
    if not 200 <= response.status_code < 300:
        raise requests.RequestException(f"callback answered HTTP {response.status_code}")
