"""A real local HTTP server for the outside world a test stands in for (an SMS gateway, a
webhook receiver, a CAPTCHA verifier): `serving(Handler)` runs it on a free loopback port
in a thread and yields its base URL; the server is shut down after the block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on 127.0.0.1:<free port>; yields "http://127.0.0.1:<port>"."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
