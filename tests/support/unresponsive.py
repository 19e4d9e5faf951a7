"""Endpoints that misbehave on 127.0.0.1: silent servers, and a proxy to moto that holds answers.

A *silent* endpoint accepts TCP connections and then never answers: either it
reads each request and says nothing, or it never even reads (the kernel's
buffers take the request), or it reads it and drips an answer that never ends,
a byte at a time, each sooner than a client's timeout. The :class:`HoldingProxy`
forwards every request to the moto server but, for the requests a rule picks, keeps the answer back
until the test releases it: the change is made in AWS, the caller never hears.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

SilentMode = Literal["reads", "never-reads", "drips"]
# How often the "drips" endpoint sends its next byte.
DRIP_SECONDS = 0.05
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@contextmanager
def silent_endpoint(mode: SilentMode, connected: threading.Event | None = None) -> Iterator[str]:
    """The URL of a server that accepts connections and never answers.

    ``connected`` is set once a caller has connected: it is then waiting for an answer.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def drain(connection: socket.socket) -> None:
        connection.settimeout(0.2)
        while not stop.is_set():
            try:
                if not connection.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def drip(connection: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"z" * 1_000_000
        try:
            connection.recv(65536)
            for byte in answer:
                if stop.wait(DRIP_SECONDS):
                    return
                connection.sendall(bytes([byte]))
        except OSError:
            return

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            held.append(connection)
            if connected is not None:
                connected.set()
            if mode == "reads":
                threading.Thread(target=drain, args=(connection,), daemon=True).start()
            elif mode == "drips":
                threading.Thread(target=drip, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


Rule = Callable[[str, str], bool]  # (method, path) -> hold this answer back


class HoldingProxy:
    """A proxy to ``target`` that holds back the answers ``rule`` picks until :meth:`release`."""

    def __init__(self, target: str, rule: Rule) -> None:
        self.target = urllib.parse.urlsplit(target)
        self.rule = rule
        self.released = threading.Event()
        self.holding = threading.Event()  # set once an answer is being held
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where to send requests."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self) -> None:
        """Let every held answer go (and answer the next ones at once)."""
        self.released.set()

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                hold = not proxy.released.is_set() and proxy.rule(self.command, self.path)
                upstream = http.client.HTTPConnection(
                    proxy.target.hostname or "127.0.0.1", proxy.target.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if hold:  # the change is made; the caller does not hear of it
                    proxy.holding.set()
                    proxy.released.wait()
                try:
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in _HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the caller is gone (it was interrupted): nobody to answer
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        return Handler
