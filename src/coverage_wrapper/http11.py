"""HTTP/1.1 for the layer's S3 client: one connection, kept alive, one request at a time.

The runtime imports this at init, with the rest of its delivery code.
``http.client`` would bring the ``email`` package along to parse headers (about
7 ms and 1.5 MB of every environment); S3's answers need far less: a
status line, a few headers, and a small body sized by ``Content-Length``,
chunked, or ended by the server's close.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import ssl

# Longest status or header line, and most header lines, taken from a server.
_MAX_LINE = 65536
_MAX_HEADERS = 100
# Interim (1xx) answers taken before the answer itself.
_MAX_INTERIM = 10
_STATUS = re.compile(r"HTTP/1\.[0-9] ([1-9][0-9][0-9])(?: .*)?")
_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
# Methods whose request carries a Content-Length even when empty (as http.client sends).
_BODY_METHODS = frozenset({"PUT", "POST", "PATCH"})


def _check_line(*parts: str) -> None:
    """ValueError for a part that would end a line of the request early (a header injected
    through a value), as http.client refuses them."""
    for part in parts:
        if "\r" in part or "\n" in part or "\0" in part:
            raise ValueError(f"a line break in a request line or header: {part[:40]!r}")


def host_header(host: str, port: int, *, secure: bool) -> str:
    """The Host header for ``host``:``port``, as http.client writes it: an IPv6 address in
    brackets, the port left out when it is the scheme's own."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if secure else 80) else f"{shown}:{port}"


def _content_length(value: str) -> int:
    """The body's length; a list of equal lengths is one (RFC 9110, 8.6)."""
    lengths = {part.strip() for part in value.split(",")}
    if len(lengths) != 1 or not _LENGTH.fullmatch(length := lengths.pop()):
        raise ProtocolError(f"a bad Content-Length: {value[:40]!r}")
    return int(length)


class RemoteDisconnectedError(ConnectionResetError):
    """The server closed the connection without answering (a kept one it let go)."""


class ProtocolError(OSError):
    """An answer that is not HTTP/1.x."""


class Response(NamedTuple):
    """A whole answer: its status, headers (names lower-cased), body, and whether the
    connection cannot carry another request."""

    status: int
    headers: dict[str, str]
    body: bytes
    will_close: bool


class Connection:
    """A connection to ``host``:``port``, over TLS when ``tls`` is given."""

    def __init__(
        self, host: str, port: int, *, timeout: float, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.tls = tls
        self.sock: socket.socket | None = None
        self._buffer = b""  # what was received and not yet read
        self._answer_by = 0.0  # time.monotonic() by which the answer must be whole

    def connect(self) -> None:
        """Open the connection (OSError, ssl.SSLError as they come)."""
        try:  # a str would load the idna codec to encode it (about 1 ms) even when ASCII
            host: str | bytes = self.host.encode("ascii")
        except UnicodeEncodeError:
            host = self.host
        # getaddrinfo, under create_connection, takes the bytes as they are.
        sock = socket.create_connection((host, self.port), timeout=self.timeout)  # type: ignore[arg-type]
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._buffer = b""

    def close(self) -> None:
        """Close the connection; the next request needs :meth:`connect`."""
        if self.sock is not None:
            sock, self.sock = self.sock, None
            sock.close()

    def exchange(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, *, limit: int
    ) -> Response:
        """Send one request and read its answer, at most ``limit`` + 1 bytes of body (a
        longer body leaves the connection to be closed).

        The connection's ``timeout`` bounds the sending, and the whole answer as well as
        each wait within it: a server that drips its answer is given up like a silent one
        (TimeoutError).
        """
        if self.sock is None:
            raise ConnectionError("not connected")
        _check_line(method, target, *headers, *headers.values())
        lines = [f"{method} {target} HTTP/1.1"]
        names = {name.lower() for name in headers}
        if "host" not in names:
            lines.append(f"Host: {host_header(self.host, self.port, secure=self.tls is not None)}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if (body or method in _BODY_METHODS) and "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        self.sock.settimeout(self.timeout)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self._answer_by = time.monotonic() + self.timeout

        status, version = self._status_line()
        for _ in range(_MAX_INTERIM):  # 100 Continue and its kind: the answer follows
            if not 100 <= status < 200:
                break
            self._headers()
            status, version = self._status_line()
        else:
            raise ProtocolError(f"more than {_MAX_INTERIM} interim answers")
        answer = self._headers()
        close = version == "HTTP/1.0" or "close" in answer.get("connection", "").lower()
        if method == "HEAD" or status in (204, 304):
            data = b""
        elif "chunked" in answer.get("transfer-encoding", "").lower():
            data, whole = self._chunked(limit)
            close = close or not whole
        elif "content-length" in answer:
            length = _content_length(answer["content-length"])
            data = self._exactly(min(length, limit + 1))
            close = close or length > limit
        else:  # the body ends with the connection
            data = self._until_closed(limit)
            close = True
        return Response(status, answer, data, close)

    def _recv(self, size: int = 65536) -> bytes:
        """What the server sent next; TimeoutError once the answer's time is up."""
        assert self.sock is not None
        left = self._answer_by - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer took longer than the timeout")
        self.sock.settimeout(min(self.timeout, left))
        return self.sock.recv(size)

    def _line(self) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > _MAX_LINE:
                raise ProtocolError("a header line longer than 64 KiB")
            chunk = self._recv()
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if len(line) > _MAX_LINE:
            raise ProtocolError("a header line longer than 64 KiB")
        return line + b"\n"

    def _status_line(self) -> tuple[int, str]:
        line = self._line()
        if not line:
            raise RemoteDisconnectedError("the server closed the connection without answering")
        text = line.decode("latin-1").rstrip("\r\n")
        found = _STATUS.fullmatch(text)
        if found is None:
            raise ProtocolError(f"not an HTTP answer: {line[:80]!r}")
        return int(found[1]), text[:8]

    def _headers(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                return found
            name, separator, value = line.decode("latin-1").partition(":")
            if separator:
                name = name.strip().lower()
                value = value.strip()
                found[name] = f"{found[name]}, {value}" if name in found else value
        raise ProtocolError(f"more than {_MAX_HEADERS} header lines")

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._recv(max(65536, size - len(self._buffer)))
            if not chunk:
                raise ProtocolError("the answer ended before its Content-Length")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _until_closed(self, limit: int) -> bytes:
        while len(self._buffer) <= limit and (chunk := self._recv()):
            self._buffer += chunk
        data, self._buffer = self._buffer[: limit + 1], b""
        return data

    def _chunked(self, limit: int) -> tuple[bytes, bool]:
        """The decoded body, and whether it was read to its end (not cut at ``limit``)."""
        data = b""
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_line):
                raise ProtocolError(f"a bad chunk size: {size_line[:20]!r}")
            size = int(size_line, 16)
            if size == 0:
                self._headers()  # the trailers, as many as headers may be
                return data, True
            if len(data) + size > limit:
                data += self._exactly(limit + 1 - len(data))
                return data, False
            data += self._exactly(size)
            self._line()  # the chunk's line end
