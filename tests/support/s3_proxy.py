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

import ssl
import urllib.parse
from http.server import BaseHTTPRequestHandler

from tests.support.loopback import LoopbackServer, forward, send_s3_error


class S3Proxy(LoopbackServer):
    def __init__(self, upstream: str, tls: ssl.SSLContext | None = None) -> None:
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
                        send_s3_error(self, status, code, f"{code} (test)")
                        return
                forward(self, owner.upstream, body)

            do_PUT = do_GET = do_POST = do_HEAD = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler, tls)

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
