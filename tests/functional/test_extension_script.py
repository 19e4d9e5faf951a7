"""The layer's extension script against a scripted Extensions API.

The script (``extensions/lambdacov``) holds Lambda's lifecycle: it makes the
runtime's FIFO before it registers, holds each INVOKE until the runtime's
``done`` line or the deadline, and at SHUTDOWN starts Python only when the spool
holds data. The API here is a plain socket server, so answers can bend HTTP as
a server may. The script with the runtime, S3 and the final pass is in
tests/e2e/test_layer_in_local_lambda.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "src/lambdacov/layer/files/extensions/lambdacov"
MARGIN_SECONDS = 0.3  # what the script keeps back from a deadline


class Api:
    """An Extensions API that answers each request with the next of ``answers``.

    An answer is bytes, or a callable that gets the request and returns bytes.
    Every request is kept with the time it arrived; with ``hold_open`` the
    connection stays open after the answer (as a server that ignores
    ``Connection: close`` would).
    """

    def __init__(self, hold_open: bool = False) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.answers: list[bytes | Callable[[bytes], bytes]] = []
        self.requests: list[tuple[float, bytes]] = []
        self.hold_open = hold_open
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            request = _read_request(connection)
            self.requests.append((time.monotonic(), request))
            answer = self.answers.pop(0) if self.answers else shutdown_event()
            connection.sendall(answer(request) if callable(answer) else answer)
            if self.hold_open:
                threading.Timer(5, connection.close).start()
            else:
                connection.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()

    def paths(self) -> list[str]:
        return [request.split(b" ", 2)[1].decode() for _, request in self.requests]


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def answer(document: dict[str, object], *, length: bool = True) -> bytes:
    body = json.dumps(document).encode()
    head = b"HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: ext-1\r\n"
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def registered() -> bytes:
    return answer({"functionName": "f", "functionVersion": "$LATEST", "handler": "app.handler"})


def invoke_event(request_id: str, seconds: float) -> bytes:
    deadline_ms = int((time.time() + seconds) * 1000)
    return answer({"eventType": "INVOKE", "requestId": request_id, "deadlineMs": deadline_ms})


def shutdown_event(seconds: float = 2.0) -> bytes:
    deadline_ms = int((time.time() + seconds) * 1000)
    return answer(
        {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline_ms}
    )


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.close()


@pytest.fixture
def python_log(tmp_path: Path) -> Path:
    """Where a stand-in for Python writes the arguments of each start (see ``run``)."""
    return tmp_path / "python-started"


def run(
    api: Api,
    spool: Path,
    python_log: Path,
    *extra: tuple[str, str],
    wait: bool = True,
) -> subprocess.Popen[str]:
    """The script, with ``LAMBDACOV_PYTHON`` a stand-in that records its arguments."""
    stand_in = python_log.parent / "python"
    stand_in.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{python_log}"\n')
    stand_in.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "COVERAGE_SPOOL_DIR": str(spool),
        "LAMBDACOV_PYTHON": str(stand_in),
        **dict(extra),
    }
    process = subprocess.Popen(
        ["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if wait:
        process.wait(timeout=30)
    return process


def test_the_fifo_is_made_before_registering_and_nothing_else_starts_at_shutdown(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    spool = tmp_path / "spool"
    seen: dict[str, bool] = {}

    def on_register(request: bytes) -> bytes:
        seen["fifo"] = (spool / "extension.fifo").is_fifo()
        seen["events"] = b'"INVOKE", "SHUTDOWN"' in request
        return registered()

    api.answers += [on_register, shutdown_event()]
    process = run(api, spool, python_log)

    assert process.returncode == 0, process.stdout.read() if process.stdout else ""
    assert seen == {"fifo": True, "events": True}
    assert api.paths() == ["/2020-01-01/extension/register", "/2020-01-01/extension/event/next"]
    assert b"Lambda-Extension-Identifier: ext-1" in api.requests[1][1]
    assert not python_log.exists()  # an empty spool: no Python at SHUTDOWN


@pytest.mark.parametrize(
    "left", ["pending/1-abc.json", "state/dirty", "state/sources-waiting"], ids=str
)
def test_shutdown_starts_the_final_pass_only_when_the_spool_holds_data(
    api: Api, tmp_path: Path, python_log: Path, left: str
) -> None:
    spool = tmp_path / "spool"
    (spool / left).parent.mkdir(parents=True)
    (spool / left).write_text("{}")
    api.answers += [registered(), shutdown_event(1.5)]
    process = run(api, spool, python_log)

    assert process.returncode == 0
    started = python_log.read_text().splitlines()
    assert len(started) == 1
    arguments = started[0].split()
    assert arguments[:2] == ["-S", "-c"]
    assert "coverage_wrapper.extension import main" in started[0]
    deadline_ms = int(arguments[-1])
    assert abs(deadline_ms / 1000 - (time.time() + 1.5)) < 1.5


def test_an_invocation_is_held_until_the_runtime_says_done(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    spool = tmp_path / "spool"
    runtime: list[int] = []

    def on_next(request: bytes) -> bytes:
        # The runtime started during init and said it reports every invocation's end.
        runtime.append(os.open(spool / "extension.fifo", os.O_WRONLY | os.O_NONBLOCK))
        os.write(runtime[0], b"armed 1\n")
        return invoke_event("req-1", 10)

    api.answers += [registered(), on_next, shutdown_event()]
    process = run(api, spool, python_log, wait=False)
    try:
        _wait_for(lambda: len(api.requests) >= 2 and bool(runtime))
        time.sleep(0.5)  # the upload
        assert len(api.requests) == 2  # still held
        told = time.monotonic()
        os.write(runtime[0], b"done req-0\n")  # an earlier invocation's: not this one
        os.write(runtime[0], b"done req-1\n")
        process.wait(timeout=30)
    finally:
        process.kill()
        for descriptor in runtime:
            os.close(descriptor)
    next_asked = api.requests[2][0]
    assert next_asked >= told
    assert next_asked - told < 1.0


def test_a_done_sent_before_the_event_was_read_is_not_waited_for(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    spool = tmp_path / "spool"
    fifo = spool / "extension.fifo"
    runtime: list[int] = []

    def on_next(request: bytes) -> bytes:
        # A fast handler: the runtime is done before the extension reads its event.
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(descriptor, b"armed 1\ndone req-1\n")
        runtime.append(descriptor)
        return invoke_event("req-1", 10)

    api.answers += [registered(), on_next, shutdown_event()]
    started = time.monotonic()
    process = run(api, spool, python_log)
    os.close(runtime[0])

    assert process.returncode == 0
    assert len(api.requests) == 3
    assert api.requests[2][0] - started < 2.0


def test_without_done_the_invocation_is_held_until_its_deadline_less_the_margin(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    spool = tmp_path / "spool"

    def on_next(request: bytes) -> bytes:
        descriptor = os.open(spool / "extension.fifo", os.O_WRONLY | os.O_NONBLOCK)
        os.write(descriptor, b"armed 1\n")
        os.close(descriptor)
        return invoke_event("req-1", 1.5)

    api.answers += [registered(), on_next, shutdown_event()]
    process = run(api, spool, python_log)
    output = process.stdout.read() if process.stdout else ""

    assert process.returncode == 0
    held = api.requests[2][0] - api.requests[1][0]
    assert 1.5 - MARGIN_SECONDS - 0.3 < held < 1.5, held
    warning = json.loads(output.strip().splitlines()[-1])
    assert warning["level"] == "WARNING"
    assert warning["message"] == "The runtime did not report the end of the invocation in time"


def test_a_runtime_that_never_armed_is_not_waited_for(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    spool = tmp_path / "spool"
    api.answers += [registered(), invoke_event("req-1", 10), shutdown_event()]
    process = run(api, spool, python_log)

    assert process.returncode == 0
    assert api.requests[2][0] - api.requests[1][0] < 1.0


def test_managed_instances_register_for_shutdown_alone(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    seen: list[bytes] = []

    def on_register(request: bytes) -> bytes:
        seen.append(request.partition(b"\r\n\r\n")[2])
        return registered()

    api.answers += [on_register, shutdown_event()]
    process = run(api, tmp_path / "spool", python_log, ("AWS_LAMBDA_MAX_CONCURRENCY", " 4 "))

    assert process.returncode == 0
    assert json.loads(seen[0]) == {"events": ["SHUTDOWN"]}


def test_something_in_the_fifos_place_is_left_alone_and_lambda_init_goes_on(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "extension.fifo").write_text("the user's")
    api.answers += [registered(), invoke_event("req-1", 10), shutdown_event()]
    process = run(api, spool, python_log)
    output = process.stdout.read() if process.stdout else ""

    assert process.returncode == 0
    assert (spool / "extension.fifo").read_text() == "the user's"
    warning = json.loads(output.strip().splitlines()[0])  # one JSON line, as the runtime's
    assert set(warning) == {"timestamp", "level", "logger", "message"}
    assert warning["timestamp"].endswith("Z") and warning["level"] == "WARNING"
    assert warning["message"].startswith(f"{spool / 'extension.fifo'} is in the way")
    assert "the function uploads coverage by itself" in warning["message"]
    assert len(api.requests) == 3


def test_a_relative_spool_makes_no_fifo_and_the_extension_only_answers_events(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    api.answers += [registered(), invoke_event("req-1", 10), shutdown_event()]
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        env={
            "PATH": os.environ["PATH"],
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "COVERAGE_SPOOL_DIR": "relative/spool",
        },
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    process.wait(timeout=30)

    assert process.returncode == 0
    assert not (tmp_path / "relative").exists()
    assert len(api.requests) == 3


def test_an_answer_without_a_length_is_read_until_the_api_closes(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    api.answers += [registered(), answer({"eventType": "SHUTDOWN", "deadlineMs": 0}, length=False)]
    process = run(api, tmp_path / "spool", python_log)
    assert process.returncode == 0
    assert len(api.requests) == 2


def test_an_answer_with_a_length_is_read_without_waiting_for_the_close(
    tmp_path: Path, python_log: Path
) -> None:
    api = Api(hold_open=True)  # closes each connection 5 s after answering
    try:
        api.answers += [registered(), invoke_event("req-1", 10), shutdown_event()]
        started = time.monotonic()
        process = run(api, tmp_path / "spool", python_log)
    finally:
        api.close()
    assert process.returncode == 0
    assert time.monotonic() - started < 4


def test_a_refused_registration_is_one_error_line_and_a_failed_start(
    api: Api, tmp_path: Path, python_log: Path
) -> None:
    api.answers.append(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n{}")
    process = run(api, tmp_path / "spool", python_log)
    output = process.stdout.read() if process.stdout else ""

    assert process.returncode == 1
    error = json.loads(output.strip())
    assert error["level"] == "ERROR"
    assert error["message"].startswith("Could not register with the Extensions API")
    assert "403" in error["message"]


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("deadline", ['"soon"', "1.5e12", "-5", '""'])
def test_an_event_without_a_usable_deadline_is_not_held_and_never_ends_the_extension(
    api: Api, tmp_path: Path, python_log: Path, deadline: str
) -> None:
    spool = tmp_path / "spool"
    (spool / "pending").mkdir(parents=True)
    (spool / "pending" / "1-abc.json").write_text("{}")

    def on_next(request: bytes) -> bytes:
        descriptor = os.open(spool / "extension.fifo", os.O_WRONLY | os.O_NONBLOCK)
        os.write(descriptor, b"armed 1\n")
        os.close(descriptor)
        body = f'{{"eventType": "INVOKE", "requestId": "req-1", "deadlineMs": {deadline}}}'
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body.encode())

    shutdown = f'{{"eventType": "SHUTDOWN", "deadlineMs": {deadline}}}'.encode()
    api.answers += [
        registered(),
        on_next,
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(shutdown), shutdown),
    ]
    process = run(api, spool, python_log)

    assert process.returncode == 0
    assert len(api.requests) == 3
    assert api.requests[2][0] - api.requests[1][0] < 1.0
    # The final pass gets no deadline it could misread (an empty one: its own default).
    assert python_log.read_text().endswith("raise SystemExit(main()) \n")
