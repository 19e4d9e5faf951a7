"""A misbehaving S3 endpoint on loopback, for the faults moto cannot produce.

It answers every request the same configured way: an S3 error document
(AccessDenied, NoSuchBucket...) with its HTTP status, or silence for a given
time (a slow S3 beyond the upload timeout). Requests are counted.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultyS3:
    def __init__(self, code: str = "AccessDenied", status: int = 403, delay: float = 0.0) -> None:
        self.code = code
        self.status = status
        self.delay = delay
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if owner.delay:
                    time.sleep(owner.delay)
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    f"<Error><Code>{owner.code}</Code><Message>{owner.code} (test)</Message>"
                    "<RequestId>TEST</RequestId></Error>"
                ).encode()
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: that is the point of a delay

            do_PUT = do_GET = do_POST = do_HEAD = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultyS3:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def unused_port_endpoint() -> str:
    """An endpoint where nothing listens: S3 is down."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
