"""The extension's client of the Extensions API, against servers that bend HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from coverage_wrapper.extension import ExtensionsApi


@pytest.fixture
def server() -> Iterator[tuple[socket.socket, list[bytes]]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    answers: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.sendall(answers.pop(0))
            time.sleep(3)  # keeps the connection open, whatever the request asked
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener, answers
    stop.set()
    listener.close()


def test_an_answer_with_a_length_is_read_without_waiting_for_the_close(
    server: tuple[socket.socket, list[bytes]],
) -> None:
    listener, answers = server
    event = json.dumps({"eventType": "INVOKE", "requestId": "r1"}).encode()
    answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(event), event))
    host, port = listener.getsockname()
    started = time.monotonic()
    assert ExtensionsApi(f"{host}:{port}").next_event()["requestId"] == "r1"
    assert time.monotonic() - started < 1.5


def test_a_chunked_answer_is_decoded(server: tuple[socket.socket, list[bytes]]) -> None:
    listener, answers = server
    answers.append(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLambda-Extension-Identifier: x\r\n"
        b"\r\n" + b'A\r\n{"eventTyp\r\n' + b'F\r\ne": "SHUTDOWN"}\r\n0\r\n\r\n'
    )
    host, port = listener.getsockname()
    api = ExtensionsApi(f"{host}:{port}")
    # Without a length the answer ends when the server closes the connection.
    assert api.next_event() == {"eventType": "SHUTDOWN"}
