"""The fault-injecting proxy of the chaos harness does what the schedule asks of it (in-process:
a tiny HTTP server behind one link)."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from configsync.replication.signing import canonical
from tests.chaos.proxy import MAX_HEAD, Proxy, _Requests, replay, resign, split_requests

BODY = b"x" * 5000


class _Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def link() -> Iterator[tuple[Proxy, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = Proxy()
    proxy.add("a>b", ("127.0.0.1", server.server_address[1]), capture=True)
    _Handler.hits = []
    try:
        yield proxy, "a>b"
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()


def _push(proxy: Proxy, name: str, **kwargs: object) -> requests.Response:
    url = proxy.links[name].url + "/api/v1/sync/push"
    return requests.post(url, data=b'{"changes": []}', timeout=5, **kwargs)  # type: ignore[arg-type]


def test_a_clean_link_forwards_and_captures_push_batches(link: tuple[Proxy, str]) -> None:
    proxy, name = link
    response = _push(proxy, name, headers={"X-Configsync-Node": "node-a"})
    assert response.status_code == 200 and response.content == BODY
    captured = proxy.captured(name)
    assert len(captured) == 1 and captured[0].startswith(b"POST /api/v1/sync/push")
    assert captured[0].endswith(b'{"changes": []}')
    assert replay(captured[0], proxy.links[name].target[1]) == 200
    assert len(_Handler.hits) == 2


def test_a_cut_link_resets_and_reaches_nothing(link: tuple[Proxy, str]) -> None:
    proxy, name = link
    proxy.set(name, cut=True)
    with pytest.raises(requests.ConnectionError):
        _push(proxy, name)
    assert _Handler.hits == []
    proxy.heal()
    assert _push(proxy, name).status_code == 200


def test_a_reset_mid_response_loses_the_answer_after_the_server_acted(
    link: tuple[Proxy, str],
) -> None:
    proxy, name = link
    proxy.set(name, reset_after=100)
    with pytest.raises(requests.RequestException):
        _push(proxy, name)
    assert _Handler.hits == ["/api/v1/sync/push"]  # the request was served; only the ack is lost


def test_a_dropped_link_answers_nothing(link: tuple[Proxy, str]) -> None:
    proxy, name = link
    proxy.set(name, drop=True)
    with pytest.raises(requests.RequestException):
        requests.post(proxy.links[name].url + "/x", data=b"{}", timeout=1)
    assert _Handler.hits == []


def test_a_resigned_batch_carries_a_valid_fresh_signature() -> None:
    body = b'{"changes": [1]}'
    raw = (
        b"POST /api/v1/sync/push HTTP/1.1\r\nHost: h\r\nX-Configsync-Node: node-a\r\n"
        b"X-Configsync-Timestamp: 1\r\nX-Configsync-Nonce: old\r\nX-Configsync-Signature: bad\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    fresh = resign(raw, secret="s3cret", now_s=1234)
    (request,), rest = split_requests(fresh)
    assert rest == b"" and request.endswith(body)
    headers = dict(
        line.split(": ", 1) for line in request.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:]
    )
    assert headers["X-Configsync-Timestamp"] == "1234" and headers["X-Configsync-Nonce"] != "old"
    expected = hmac.new(
        b"s3cret",
        canonical(
            "POST", "/api/v1/sync/push", "1234", headers["X-Configsync-Nonce"], body, "node-a"
        ),
        hashlib.sha256,
    ).hexdigest()
    assert headers["X-Configsync-Signature"] == expected


def test_blocked_pushes_are_reset_and_other_requests_pass(link: tuple[Proxy, str]) -> None:
    proxy, name = link
    proxy.set(name, block_push=True)
    with pytest.raises(requests.RequestException):
        _push(proxy, name)
    assert requests.post(proxy.links[name].url + "/api/v1/sync/changes", timeout=5).ok
    assert _Handler.hits == ["/api/v1/sync/changes"]


def test_a_lost_ack_resets_the_writer_after_the_server_answered_2xx(
    link: tuple[Proxy, str],
) -> None:
    proxy, name = link
    proxy.set(name, lose_ack=True)
    with pytest.raises(requests.RequestException):
        _push(proxy, name)
    assert _Handler.hits == ["/api/v1/sync/push"]  # served (committed): only the 2xx was lost
    assert proxy.links[name].lost_acks == 1
    # Headers and body in separate packets: still a write whose 2xx is withheld.
    url = proxy.links[name].url + "/api/v1/sync/push"
    chunks = iter([b'{"changes":', b" []}"])
    with pytest.raises(requests.RequestException):
        requests.post(url, data=chunks, headers={"Content-Length": "15"}, timeout=5)
    assert proxy.links[name].lost_acks == 2
    proxy.heal()
    assert _push(proxy, name).status_code == 200
    assert proxy.links[name].lost_acks == 2


def test_requests_are_cut_from_a_stream_in_any_chunking_and_non_http_is_dropped() -> None:
    body = b"y" * 3000
    raw = b"POST /x HTTP/1.1\r\nContent-Length: 3000\r\n\r\n" + body
    stream = raw * 3
    for size in (1, 7, 1000, len(stream)):
        cutter = _Requests()
        found = [r for i in range(0, len(stream), size) for r in cutter.feed(stream[i : i + size])]
        assert found == [raw, raw, raw] and not cutter.buffer
    # A stream that is no HTTP (PostgreSQL's protocol) is never buffered past MAX_HEAD bytes.
    cutter = _Requests()
    for _ in range(200):
        assert cutter.feed(b"\x00Q" * 4000) == []
        assert len(cutter.buffer) <= MAX_HEAD + 8000


def test_a_link_that_does_not_capture_parses_nothing(link: tuple[Proxy, str]) -> None:
    proxy, name = link
    target = proxy.links[name].target
    proxy.add("plain", target)
    response = requests.post(proxy.links["plain"].url + "/api/v1/sync/push", data=b"{}", timeout=5)
    assert response.status_code == 200 and proxy.captured("plain") == []
