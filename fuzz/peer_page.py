"""atheris harness: a peer's answers as the HTTP transport parses them into ``FeedPage``s, push
results and replication logs (``transports/http.py``, ``page.py``).

The input is the answer's body (its first byte picks the status); every call returns its typed
answer or raises ``TransportError``.
"""

from __future__ import annotations

import sys
from typing import Any

import _harness
import atheris

with atheris.instrument_imports(
    include=["configsync.replication.transports.http", "configsync.replication.page"]
):
    _harness.setup()
    import requests
    from requests.adapters import BaseAdapter
    from requests.structures import CaseInsensitiveDict

    from configsync.replication.errors import TransportError
    from configsync.replication.page import FeedPage
    from configsync.replication.transports.base import PushRecord
    from configsync.replication.transports.http import HttpPeerTransport

STATUSES = (200, 200, 200, 400, 401, 403, 500, 503)


class Canned(BaseAdapter):
    """Answers every request with ``status`` and ``body`` (no socket)."""

    status = 200
    body = b""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = self.status
        response.headers = CaseInsensitiveDict({"Date": "Tue, 01 Dec 2026 12:00:00 GMT"})
        response._content = self.body
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


ADAPTER = Canned()
SESSION = requests.Session()
SESSION.mount("http://", ADAPTER)
LINK = HttpPeerTransport(
    name="peer",
    base_url="http://peer.invalid",
    node=_harness.NODE,
    secret=_harness.SECRET,
    session=SESSION,
)
RECORD = PushRecord("cd" * 8, "e1.5", "")


def one_input(data: bytes) -> None:
    if not data:
        return
    ADAPTER.status = STATUSES[data[0] % len(STATUSES)]
    ADAPTER.body = data[1:]
    calls = (
        lambda: LINK.pull("e1.2", 10, with_log=True),
        lambda: LINK.digest("", 10),
        lambda: LINK.push_with_log([{"model": "x"}], record=RECORD),
        LINK.log_get,
        lambda: LINK.log_record(direction="push", session="cd" * 8, cursor="e1.5"),
    )
    for call in calls:
        try:
            answer = call()
        except TransportError:
            continue
        if isinstance(answer, FeedPage):
            assert isinstance(answer.changes, list) and isinstance(answer.next_cursor, str)


if __name__ == "__main__":
    _harness.run("peer_page", one_input)
    sys.exit(0)
