"""What the test doubles in front of moto share: a threaded server on 127.0.0.1, S3's
error document, and forwarding a request upstream unchanged."""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """A threaded HTTP server on a free port of 127.0.0.1, serving while in a ``with``;
    HTTPS with ``tls``, a server-side context."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
    ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if tls else "http"
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def send_s3_error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    """Answer with S3's XML error document (no body for a HEAD, as S3 does)."""
    payload = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>TEST</RequestId></Error>"
    ).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def forward(handler: BaseHTTPRequestHandler, upstream: str, body: bytes) -> None:
    """Send the request to ``upstream`` and its answer back, whole."""
    target = urllib.parse.urlsplit(upstream)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
    headers["Host"] = f"{target.hostname}:{target.port}"
    connection.request(handler.command, handler.path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    handler.send_response(response.status)
    head = handler.command == "HEAD"  # its Content-Length is the object's: kept
    dropped = ("transfer-encoding", "connection") + (() if head else ("content-length",))
    for key, value in response.getheaders():
        if key.lower() not in dropped:
            handler.send_header(key, value)
    if not head:
        handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if not head:
        handler.wfile.write(payload)
    connection.close()
