"""A misbehaving S3 endpoint on loopback, for the faults moto cannot produce.

``FaultyS3`` answers every request according to its ``mode``, which a test
may change at any time:

``deny``     an S3 error document (``code``, HTTP ``status``), AccessDenied by default
``slow``     silence for ``delay`` seconds, then the error (S3 slower than the timeout)
``reset``    the connection closed without an answer (S3 down)
``forward``  the request passed to ``upstream`` (moto server) and its answer returned:
             S3 is back

In ``forward`` mode, faults can still be aimed at object GETs: keys in
``denied_keys`` ("bucket/key") get the error document (moto cannot deny one key
to one caller), the next ``resets_left`` GETs get their connection reset, and
each GET waits ``get_delay`` seconds first (a slow S3).
"""

from __future__ import annotations

import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from tests.support.loopback import LoopbackServer, forward, send_s3_error


class FaultyS3(LoopbackServer):
    def __init__(
        self,
        mode: str = "deny",
        *,
        code: str = "AccessDenied",
        status: int = 403,
        delay: float = 5.0,
        upstream: str | None = None,
    ) -> None:
        self.mode = mode
        self.code = code
        self.status = status
        self.delay = delay
        self.upstream = upstream
        # S3's own wording for the usual denial, so messages read as they would on AWS.
        self.message = "Access Denied" if code == "AccessDenied" else f"{code} (test)"
        self.requests = 0
        self.object_gets = 0
        self.denied_keys: set[str] = set()
        self.resets_left = 0
        self.get_delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                owner.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    if owner.mode == "forward":
                        if self._aimed_fault():
                            return
                        self._forward(body)
                        return
                    if owner.mode == "reset":
                        self.close_connection = True
                        self.connection.close()
                        return
                    if owner.mode == "slow":
                        time.sleep(owner.delay)
                    self._error()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client gave up waiting: that is the point of a delay

            def _aimed_fault(self) -> bool:
                """Deny or reset this request if it is an object GET the test aimed at."""
                if self.command != "GET" or "list-type" in self.path:
                    return False
                owner.object_gets += 1
                time.sleep(owner.get_delay)
                if owner.resets_left > 0:
                    owner.resets_left -= 1
                    self.close_connection = True
                    self.connection.close()
                    return True
                key = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                if key in owner.denied_keys:
                    self._error()
                    return True
                return False

            def _error(self) -> None:
                send_s3_error(self, owner.status, owner.code, owner.message)

            def _forward(self, body: bytes) -> None:
                assert owner.upstream is not None
                forward(self, owner.upstream, body)

            do_PUT = do_GET = do_POST = do_HEAD = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler)


def unused_port_endpoint() -> str:
    """An endpoint where nothing listens: S3 is down."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
