"""The S3 client's HTTP/1.1 connection against servers that answer as HTTP allows.

S3 itself (moto), keep-alive, timeouts, TLS and hostile error documents are in
tests/functional/test_s3_client.py; here each answer is written byte by byte.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coverage_wrapper import http11
from coverage_wrapper.s3_client import _http_date


class Server:
    """Answers each connection's first request with ``answer``, then closes it unless
    ``keep`` (then it waits for the client to close); keeps what it received."""

    def __init__(self, answer: bytes, *, keep: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.answer, self.keep = answer, keep
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:  # closed by the test before the connection was taken
            return
        with connection:
            while b"\r\n\r\n" not in self.received:
                chunk = connection.recv(65536)
                if not chunk:
                    return  # the client gave up before sending a whole request
                self.received += chunk
            with contextlib.suppress(OSError):  # a client that gave up midway
                connection.sendall(self.answer)
                if self.keep:
                    connection.recv(1)  # until the client closes


@pytest.fixture
def serve() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.listener.close()


def exchange(
    servers: list[Server],
    answer: bytes,
    method: str = "GET",
    *,
    keep: bool = False,
    limit: int = 100,
) -> http11.Response:
    server = Server(answer, keep=keep)
    servers.append(server)
    return exchange_with(server, method, "/b/k", {"host": "example"}, limit=limit)


def exchange_with(
    server: Server, method: str, path: str, headers: dict[str, str], *, limit: int = 100
) -> http11.Response:
    """One request to ``server`` on a connection of its own, closed after."""
    connection = http11.Connection("127.0.0.1", server.port, timeout=5)
    connection.connect()
    try:
        return connection.exchange(method, path, headers, b"", limit=limit)
    finally:
        connection.close()


def test_a_body_sized_by_its_length_leaves_the_connection_open(serve: list[Server]) -> None:
    answer = exchange(
        serve, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: x\r\n\r\nhello", keep=True
    )
    assert answer == http11.Response(200, {"content-length": "5", "etag": "x"}, b"hello", False)
    assert serve[0].received.startswith(b"GET /b/k HTTP/1.1\r\nhost: example\r\n")
    assert b"content-length" not in serve[0].received.lower()  # a GET without a body


def test_a_put_with_an_empty_body_says_so(serve: list[Server]) -> None:
    exchange(serve, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "PUT")
    assert b"Content-Length: 0\r\n" in serve[0].received


def test_a_chunked_body_is_decoded(serve: list[Server]) -> None:
    answer = exchange(
        serve,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
        keep=True,
    )
    assert (answer.body, answer.will_close) == (b"abcde", False)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b"x" * 500,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n"
        + b"x" * 500
        + b"\r\n0\r\n\r\n",
    ],
    ids=["length", "chunked"],
)
def test_a_body_over_the_limit_is_cut_and_the_connection_given_up(
    serve: list[Server], answer: bytes
) -> None:
    got = exchange(serve, answer, keep=True, limit=100)
    assert (len(got.body), got.will_close) == (101, True)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    ],
    ids=["HTTP/1.0", "close"],
)
def test_a_body_without_a_length_ends_with_the_connection(
    serve: list[Server], answer: bytes
) -> None:
    got = exchange(serve, answer)
    assert (got.body, got.will_close) == (b"until the end", True)


def test_a_head_answer_has_no_body_whatever_its_length_says(serve: list[Server]) -> None:
    got = exchange(serve, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD", keep=True)
    assert (got.status, got.body, got.headers["content-length"]) == (200, b"", "1234")


def test_interim_answers_are_skipped(serve: list[Server]) -> None:
    got = exchange(
        serve, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", "PUT", keep=True
    )
    assert (got.status, got.body) == (204, b"")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"", http11.RemoteDisconnectedError),
        (b"SSH-2.0-OpenSSH\r\n\r\n", http11.ProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", http11.ProtocolError),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", http11.ProtocolError),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n", http11.ProtocolError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", http11.ProtocolError),
    ],
    ids=["closed", "not-http", "short", "headers", "long-line", "bad-chunk"],
)
def test_what_is_not_a_whole_answer_is_an_os_error(
    serve: list[Server], answer: bytes, error: type[OSError]
) -> None:
    with pytest.raises(error):
        exchange(serve, answer)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wed, 02 Dec 2026 05:00:09 GMT", datetime(2026, 12, 2, 5, 0, 9, tzinfo=UTC)),
        ("2 Dec 2026 05:00:09 +0000", datetime(2026, 12, 2, 5, 0, 9, tzinfo=UTC)),
        ("Wed, 31 Feb 2026 05:00:09 GMT", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_http_dates(text: str, expected: datetime | None) -> None:
    assert _http_date(text) == expected


def test_an_ascii_host_is_reached_without_loading_the_idna_codec(serve: list[Server]) -> None:
    server = Server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    serve.append(server)
    code = (
        "import sys; from coverage_wrapper import http11;"
        f"c = http11.Connection('127.0.0.1', {server.port}, timeout=5); c.connect();"
        "print(c.exchange('GET', '/', {}, b'', limit=10).status, 'encodings.idna' in sys.modules)"
    )
    shown = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": str(Path(http11.__file__).parents[1])},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert shown.stdout.split() == ["200", "False"]


@pytest.mark.parametrize(
    "headers",
    [{"x-amz-meta-a": "b\r\nx-amz-acl: public-read"}, {"x\nbad": "v"}, {"content-type": "a\0b"}],
)
def test_a_line_break_in_a_header_is_refused_before_sending(
    serve: list[Server], headers: dict[str, str]
) -> None:
    server = Server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    serve.append(server)
    with pytest.raises(ValueError, match="line break"):
        exchange_with(server, "PUT", "/b/k", headers, limit=10)
    assert server.received == b""


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2\xc2\xb200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\n" * 11 + b"HTTP/1.1 200 OK\r\n\r\n",
    ],
    ids=["status", "length-digit", "length-huge", "lengths-differ", "length-negative",
         "chunk-negative", "chunk-0x", "interim-endless"],
)  # fmt: skip
def test_numbers_http_does_not_allow_are_a_protocol_error(
    serve: list[Server], answer: bytes
) -> None:
    with pytest.raises(http11.ProtocolError):
        exchange(serve, answer)


def test_a_repeated_equal_length_is_one_length(serve: list[Server]) -> None:
    got = exchange(
        serve, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", keep=True
    )
    assert (got.body, got.will_close) == (b"hello", False)


def test_an_answer_dripped_slower_than_its_timeout_is_given_up(serve: list[Server]) -> None:
    from tests.support.unresponsive import silent_endpoint

    with silent_endpoint("drips") as url:
        port = int(url.rsplit(":", 1)[1])
        connection = http11.Connection("127.0.0.1", port, timeout=0.5)
        connection.connect()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.exchange("GET", "/", {}, b"", limit=10)
        connection.close()
    assert time.monotonic() - started < 1.5  # each byte came within 0.5 s; the answer did not


def test_without_a_host_header_one_is_sent_with_the_port_that_is_not_the_schemes(
    serve: list[Server],
) -> None:
    server = Server(b"HTTP/1.1 204 No Content\r\n\r\n")
    serve.append(server)
    exchange_with(server, "GET", "/creds", {"Accept": "application/json"}, limit=10)
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in server.received
    assert http11.host_header("::1", 80, secure=False) == "[::1]"
    assert http11.host_header("example.com", 443, secure=True) == "example.com"
    assert http11.host_header("example.com", 80, secure=True) == "example.com:80"
