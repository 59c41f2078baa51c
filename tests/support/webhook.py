"""A webhook receiver on 127.0.0.1 (a stand-in for a chat incoming webhook).

``Hook`` records every JSON body posted to it; its answers are scripted per test as a
list of (status, delay). ``serve_hook()`` runs one in a thread for the duration of a block.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_PATH = "/services/T000/B000/s3cr3t-token"


class Hook(ThreadingHTTPServer):
    """A webhook receiver whose answers are scripted per test: a list of (status, delay)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: list[tuple[int, float]] = []
        self.received: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{SECRET_PATH}"


class Handler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append(json.loads(body))
        self.server.headers_seen.append(dict(self.headers))
        status, delay = self.server.script.pop(0) if self.server.script else (200, 0.0)
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"no")
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_hook() -> Iterator[Hook]:
    server = Hook()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
