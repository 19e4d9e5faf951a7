"""A loopback proxy in front of moto server: it records requests and can refuse chosen ones.

``S3Proxy(upstream)`` forwards every request to ``upstream`` and records each as
``(method, key)`` in ``requests`` (the key without its bucket; path-style
addressing, as botocore uses for an IP endpoint), and its headers, lower-cased,
in ``headers``. ``refusals`` maps
``(method, key prefix)`` to ``(HTTP status, error code)``: a request that matches
gets that S3 error instead of being forwarded. moto cannot refuse one operation
on one prefix to one caller (a HEAD without s3:GetObject, a PUT whose checksum
does not match), so this does.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class S3Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.refusals: dict[tuple[str, str], tuple[int, str]] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                key = path.lstrip("/").partition("/")[2]
                owner.requests.append((self.command, key))
                owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                for (method, prefix), (status, code) in owner.refusals.items():
                    if self.command == method and key.startswith(prefix):
                        self._error(status, code)
                        return
                self._forward(body)

            def _error(self, status: int, code: str) -> None:
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    f"<Error><Code>{code}</Code><Message>{code} (test)</Message>"
                    "<RequestId>TEST</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD's answer has no body
                    self.wfile.write(payload)

            def _forward(self, body: bytes) -> None:
                target = urllib.parse.urlsplit(owner.upstream)
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"{target.hostname}:{target.port}"
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                self.send_response(response.status)
                head = self.command == "HEAD"  # its Content-Length is the object's: kept
                dropped = ("transfer-encoding", "connection") + (
                    () if head else ("content-length",)
                )
                for key, value in response.getheaders():
                    if key.lower() not in dropped:
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not head:
                    self.wfile.write(payload)
                connection.close()

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

    def sent(self, method: str, prefix: str = "") -> list[str]:
        """The keys of the requests of ``method`` under ``prefix``, in order."""
        return [key for m, key in self.requests if m == method and key.startswith(prefix)]

    def headers_of(self, method: str, key: str) -> dict[str, str]:
        """The headers of the last request of ``method`` for ``key``."""
        sent = [
            h
            for (m, k), h in zip(self.requests, self.headers, strict=True)
            if (m, k) == (method, key)
        ]
        return sent[-1]

    def __enter__(self) -> S3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
