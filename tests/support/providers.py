"""A local stub of the providers' model-list endpoints (the real APIs are outside the machine)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD_KEY = "sk-CANARY-stub-good"


@dataclass
class StubProvider:
    """Records requests; answers 200 with a model list when the key is ``GOOD_KEY``."""

    base_url: str
    requests: list[dict] = field(default_factory=list)
    delay_seconds: float = 0.0


@contextmanager
def serve_stub_provider() -> Iterator[StubProvider]:
    """Serve a :class:`StubProvider` on a free port of 127.0.0.1 for the ``with`` block."""
    stub = StubProvider(base_url="")
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            stub.requests.append({"path": self.path, "headers": dict(self.headers)})
            if stub.delay_seconds:
                release.wait(stub.delay_seconds)
            presented = {
                self.headers.get("Authorization", "").removeprefix("Bearer "),
                self.headers.get("x-api-key", ""),
                self.headers.get("x-goog-api-key", ""),
                self.headers.get("api-key", ""),
            }
            open_path = self.path.startswith("/api/tags")
            if GOOD_KEY in presented or open_path:
                body = json.dumps({"data": [{"id": "m1"}, {"id": "m2"}], "models": None})
                if open_path:
                    body = json.dumps({"models": [{"name": "llama3.2"}]})
                self.send_response(200)
            else:
                body = json.dumps({"error": "invalid key"})
                self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield stub
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
