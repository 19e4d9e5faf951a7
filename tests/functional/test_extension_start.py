"""The extension's start: what happens before it registers delays every cold start.

Lambda starts the runtime once every extension has registered, so the extension
binds the socket the runtime will say ``armed`` on before it registers, and
imports nothing else it can do without until then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# Modules the extension needs only after registering: configuration, spool, logging.
AFTER_REGISTERING = (
    "typing",
    "logging",
    "dataclasses",
    "pathlib",
    "json",
    "socket",
    "threading",
    "coverage_wrapper.models",
)


def extension_env(spool: Path, api: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(SRC),
        "AWS_LAMBDA_RUNTIME_API": api,
        "COVERAGE_S3_BUCKET": "coverage-bucket",
        "COVERAGE_SPOOL_DIR": str(spool),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }


def test_importing_the_extension_loads_nothing_it_needs_only_after_registering():
    shown = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import sys, coverage_wrapper.extension; print(' '.join(sorted(sys.modules)))",
        ],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(shown.stdout.split())
    assert "coverage_wrapper.extension" in loaded
    assert loaded.isdisjoint(AFTER_REGISTERING), loaded & set(AFTER_REGISTERING)


def run_extension(spool: Path, seen: dict[str, bool]) -> subprocess.CompletedProcess[str]:
    """The extension against a fake Extensions API that ends it at its first ``event/next``;
    ``seen["socket_at_register"]``: whether its socket was bound when it registered."""

    class Api(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # register
            self.rfile.read(int(self.headers["Content-Length"]))
            seen["socket_at_register"] = (spool / "extension.sock").is_socket()
            self._answer({"functionName": "f"})

        def do_GET(self) -> None:  # event/next: end at once
            self._answer({"eventType": "SHUTDOWN", "deadlineMs": 0})

        def _answer(self, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Lambda-Extension-Identifier", "id-1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        return subprocess.run(
            [sys.executable, "-S", "-m", "coverage_wrapper.extension"],
            env=extension_env(spool, f"{host}:{port}"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()


def test_the_runtimes_socket_is_bound_before_the_extension_registers(tmp_path):
    spool = tmp_path / "spool"
    seen: dict[str, bool] = {}
    done = run_extension(spool, seen)

    assert done.returncode == 0, done.stderr
    assert seen == {"socket_at_register": True}
    assert not (spool / "extension.sock").exists()  # removed at SHUTDOWN


def test_a_file_that_is_not_a_socket_in_the_sockets_place_is_left_alone(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "extension.sock").write_text("the user's")
    seen: dict[str, bool] = {}
    done = run_extension(spool, seen)

    assert done.returncode == 0, done.stderr  # registered and idled: Lambda's init goes on
    assert (spool / "extension.sock").read_text() == "the user's"
    assert "the function uploads coverage by itself" in done.stdout + done.stderr
