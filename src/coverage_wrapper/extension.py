"""The layer's external extension: delivers spooled coverage after each response.

Lambda starts ``/opt/extensions/lambdacov`` before the runtime. It registers
for INVOKE and SHUTDOWN events and then loops:

* INVOKE: if the runtime announced itself (``armed``, sent by the exec
  wrapper's handler at start-up), wait until it reports the invocation done;
  then deliver what is pending before asking for the next event. Lambda does
  not freeze the environment until the extension asks, so the upload happens
  after the response has gone out and before the freeze.
* SHUTDOWN: deliver everything left, within Lambda's shutdown deadline.

On Lambda Managed Instances (``AWS_LAMBDA_MAX_CONCURRENCY`` set) several
runtime processes serve invocations concurrently and the environment is never
frozen, so there is no one invocation's end to hold: the extension registers
for SHUTDOWN alone and delivers from a thread of its own, shortly after
runtime processes report ``done``, whichever process it was (see
:meth:`CoverageExtension.serve_concurrently`).

The extension never touches the function's response; its failures are JSON
log lines, and whatever it could not deliver stays in the spool for the next
pass. It never fails Lambda's init either: with coverage switched off, a bad
configuration or a spool it cannot use, it registers and idles, and the
runtime (which reads the same variables) logs the one line that explains why.

Lambda starts the runtime once every extension has registered, so what comes
before :meth:`ExtensionsApi.register` delays every cold start: only the socket
the runtime will talk to is bound first (:func:`_listen`). Everything else (the
configuration, the spool, logging, the deliverer) is imported and made after it,
beside the runtime's own init.
"""

from __future__ import annotations

import _socket  # not socket: see coverage_wrapper.notify
import os
import sys
import time

from coverage_wrapper import locations
from coverage_wrapper.notify import ARMED, DISARMED, DONE, ExtensionListener

TYPE_CHECKING = False  # typing itself is not imported before registering (see above)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from coverage_wrapper.models import CoverageConfig

NAME = "lambdacov"
_EVENTS = b'{"events": ["INVOKE", "SHUTDOWN"]}'
_SHUTDOWN_ONLY = b'{"events": ["SHUTDOWN"]}'
# Time kept back from a deadline so the extension asks for its next event in time.
_MARGIN = 0.3
# Managed Instances: how long the deliverer waits after a ``done`` before it uploads, so
# that invocations finishing together share one upload;
GATHER_SECONDS = 1.0
# how long one such pass may take (SHUTDOWN's final pass waits for a pass under way, and
# Lambda gives extensions 2 s for SHUTDOWN);
PASS_SECONDS = 1.0
# and how often its threads look for the end of the environment.
_POLL_SECONDS = 0.2


def concurrent_environment(environ: Mapping[str, str]) -> bool:
    """True on Lambda Managed Instances: several runtime processes in one environment,
    invocations concurrent, and no freeze between them (Lambda sets
    ``AWS_LAMBDA_MAX_CONCURRENCY``, from which the Python runtime forks its processes)."""
    return bool(environ.get("AWS_LAMBDA_MAX_CONCURRENCY", "").strip())


def _log() -> Any:
    from coverage_wrapper.logging_utils import get_logger

    return get_logger("coverage_wrapper.extension")


class ExtensionsApi:
    """A minimal client of Lambda's Extensions API.

    HTTP/1.1 on a plain socket, one connection per call: the API is on
    localhost, and urllib (with http.client, email and ssl under it) would be
    most of what the extension imports before its first ``event/next``, which
    Lambda's init waits for.
    """

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host or address, int(port or 80)
        self.identifier = ""

    def _call(self, method: str, path: str, body: bytes = b"") -> tuple[dict[str, str], Any]:
        headers = [
            f"{method} /2020-01-01/extension/{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Lambda-Extension-Name: {NAME}",
            "Connection: close",
            f"Content-Length: {len(body)}",
        ]
        if self.identifier:
            headers.append(f"Lambda-Extension-Identifier: {self.identifier}")
        connection = _connect(self.host, self.port)
        try:
            connection.sendall("\r\n".join([*headers, "", ""]).encode("latin-1") + body)
            answer = _read_all(connection)
        finally:
            connection.close()
        return _parse_response(answer)

    def register(self, *, invoke: bool = True) -> None:
        """Register for INVOKE and SHUTDOWN events (SHUTDOWN alone without ``invoke``)."""
        headers, _ = self._call("POST", "register", _EVENTS if invoke else _SHUTDOWN_ONLY)
        self.identifier = headers["lambda-extension-identifier"]

    def next_event(self) -> dict[str, Any]:
        """Block until Lambda sends the next event."""
        _, event = self._call("GET", "event/next")
        return event  # type: ignore[no-any-return]


def _connect(host: str, port: int) -> _socket.socket:
    """A TCP connection to the API: the first of its addresses that takes one."""
    error = OSError(f"Extensions API at {host}:{port}: no address")
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        connection = _socket.socket(family, kind, proto)
        try:
            connection.connect(address)
        except OSError as failure:
            connection.close()
            error = failure
        else:
            return connection
    raise error


def _read_all(connection: _socket.socket) -> bytes:
    """The API's answer: up to its Content-Length when it gives one (a server that kept
    the connection open despite ``Connection: close`` must not hold us), else until
    it closes the connection."""
    answer = b""
    expected = None
    while chunk := connection.recv(65536):
        answer += chunk
        if expected is None and b"\r\n\r\n" in answer:
            head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
            lengths = [line for line in head.split("\r\n") if line.startswith("content-length:")]
            if lengths and lengths[0].partition(":")[2].strip().isdigit():
                expected = len(head) + 4 + int(lengths[0].partition(":")[2].strip())
        if expected is not None and len(answer) >= expected:
            break
    return answer


def _parse_response(answer: bytes) -> tuple[dict[str, str], Any]:
    """Headers (names lower-cased) and the JSON body; OSError for an error status."""
    import json  # once the request is out: Lambda may be starting the runtime meanwhile

    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit() or not 200 <= int(parts[1]) < 300:
        raise OSError(f"Extensions API answered {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return headers, json.loads(body or b"{}")


def _unchunk(body: bytes) -> bytes:
    """The payload of a chunked body."""
    payload = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        payload.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(payload)


def _seconds_left(event: dict[str, Any]) -> float:
    deadline_ms = event.get("deadlineMs")
    if not isinstance(deadline_ms, (int, float)):
        return 2.0
    return deadline_ms / 1000 - time.time()


class CoverageExtension:
    """The loop described in the module docstring."""

    def __init__(
        self,
        api: ExtensionsApi,
        config: CoverageConfig,
        listener: ExtensionListener | None,
        bind_error: Exception | None = None,
    ) -> None:
        """Check the spool, then take the listener bound by :func:`_listen` (its
        ``bind_error`` is raised when it could not be bound)."""
        import threading

        from coverage_wrapper.spool import SpoolDirectory

        self.api = api
        self.config = config
        self.spool = SpoolDirectory(config.spool_dir)
        self.spool.prepare()  # ConfigurationError when the spool cannot be used
        if listener is None:
            raise bind_error or OSError(f"{self.spool.socket_path} was not bound")
        self.listener = listener
        self.spool.date_environment()
        self._deliverer: Any = None
        self._making = threading.Lock()
        self.armed = False

    @property
    def deliverer(self) -> Any:
        """The Deliverer, made after Lambda's init: what it imports (the data files'
        reader and writer, the S3 client and its TLS context) is not on the init's path
        (see :meth:`run`)."""
        with self._making:
            if self._deliverer is None:
                self._deliverer = self._make_deliverer()
        return self._deliverer

    def _make_deliverer(self) -> Any:
        from coverage_wrapper.delivery import Deliverer
        from coverage_wrapper.s3_uploader import S3Uploader

        function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        uploader = S3Uploader(self.config, attempts=2)
        deliverer = Deliverer(self.config, self.spool, uploader, function)
        try:
            uploader.prepare()
        except Exception as error:  # noqa: BLE001 - the upload will say what is wrong
            _log().debug(f"S3 client not prepared: {type(error).__name__}: {error}")
        return deliverer

    def _prepare(self) -> None:
        try:
            _ = self.deliverer
        except Exception as error:  # noqa: BLE001 - made again, and reported, when needed
            _log().debug(f"Deliverer not prepared: {type(error).__name__}: {error}")

    def _note(self, messages: list[list[str]]) -> None:
        for words in messages:
            if words[:1] == [ARMED]:
                self.armed = True
            elif words[:1] == [DISARMED]:
                self.armed = False

    def on_invoke(self, event: dict[str, Any]) -> None:
        """Wait for the runtime's checkpoint, then deliver within the invocation's time."""
        self.listener.forget_done()  # ids from earlier invocations can no longer matter
        self._note(self.listener.drain())
        _ = self.deliverer  # made by run()'s thread by now, or here (never after the handler)
        left = _seconds_left(event) - _MARGIN
        if self.armed:
            done, others = self.listener.wait_for(
                str(event.get("requestId", "")), time.monotonic() + left
            )
            self._note(others)
            if not done:
                _log().warning(
                    "The runtime did not report the end of the invocation in time",
                    extra={"data": {"request_id": event.get("requestId")}},
                )
                return
        self._deliver(min(self.config.upload_timeout, _seconds_left(event) - _MARGIN))

    def on_shutdown(self, event: dict[str, Any]) -> None:
        """Deliver everything left before the environment goes away."""
        self._note(self.listener.drain())
        self._deliver(_seconds_left(event) - _MARGIN, final=True)
        self.listener.close()

    def _deliver(self, budget: float, *, final: bool = False) -> None:
        if budget <= 0:
            return
        try:
            if self.deliverer.has_pending():
                self.deliverer.deliver(time.monotonic() + budget, final=final)
        except Exception as error:  # noqa: BLE001 - the extension must keep serving events
            _log().error(f"Coverage delivery failed: {type(error).__name__}: {error}")

    def run(self) -> None:
        """Serve events until SHUTDOWN.

        The deliverer is made on a thread of its own while this one waits for its
        first event: Lambda's init ends at that wait, and the making overlaps the
        runtime's own init instead of following the first INVOKE.
        """
        import threading

        threading.Thread(target=self._prepare, name="lambdacov-prepare", daemon=True).start()
        if concurrent_environment(os.environ):
            self.serve_concurrently()
            return
        while True:
            event = self.api.next_event()
            kind = event.get("eventType")
            try:
                if kind == "INVOKE":
                    self.on_invoke(event)
                elif kind == "SHUTDOWN":
                    self.on_shutdown(event)
            except Exception as error:  # noqa: BLE001 - an extension that exits fails the invocation
                _log().error(f"Coverage extension error: {type(error).__name__}: {error}")
            if kind == "SHUTDOWN":
                return

    def serve_concurrently(self) -> None:
        """Managed Instances: deliver as runtime processes report ``done``, until SHUTDOWN.

        One thread reads the runtime processes' messages as they come (a datagram
        socket queues only a few, and a runtime process that finds the queue full
        uploads by itself, within its invocation); another delivers once the
        messages settle (:data:`GATHER_SECONDS` after the first ``done``), in passes of
        at most :data:`PASS_SECONDS`, again while work is left. This one waits for
        SHUTDOWN, stops both, and delivers what is left.
        """
        import threading

        stop = threading.Event()
        done = threading.Event()
        reader = threading.Thread(
            target=self._read_done, args=(stop, done), name="lambdacov-read", daemon=True
        )
        sender = threading.Thread(
            target=self._deliver_done, args=(stop, done), name="lambdacov-deliver", daemon=True
        )
        reader.start()
        sender.start()
        while True:
            event = self.api.next_event()
            if event.get("eventType") == "SHUTDOWN":
                break
        stop.set()
        reader.join()
        # A pass under way ends within PASS_SECONDS. The final pass comes after it even
        # if it has not ended by then: the spool's lock makes it wait, up to the deadline.
        sender.join(max(0.0, _seconds_left(event) - _MARGIN))
        try:
            self.on_shutdown(event)
        except Exception as error:  # noqa: BLE001 - as in run()
            _log().error(f"Coverage extension error: {type(error).__name__}: {error}")

    def _read_done(self, stop: Any, done: Any) -> None:
        while not stop.is_set():
            words = self.listener.receive(_POLL_SECONDS)
            if words and words[0] == DONE:
                done.set()

    def _deliver_done(self, stop: Any, done: Any) -> None:
        while not stop.is_set():
            if not done.wait(_POLL_SECONDS):
                continue
            if stop.wait(GATHER_SECONDS):
                return  # SHUTDOWN delivers it
            done.clear()
            self._deliver(min(self.config.upload_timeout, PASS_SECONDS))
            if self._work_left():
                # Out of time, or failed: another pass soon (after a failure the
                # deliverer's backoff keeps passes to merging until it is time to retry).
                done.set()

    def _work_left(self) -> bool:
        try:
            return bool(self.deliverer.has_pending())
        except Exception:  # noqa: BLE001 - reported by the next pass
            return False


def idle(api: ExtensionsApi) -> None:
    """Answer Lambda's events without doing anything until SHUTDOWN."""
    while api.next_event().get("eventType") != "SHUTDOWN":
        pass


def _listen() -> tuple[ExtensionListener | None, Exception | None]:
    """The runtime's channel, bound before the runtime can start and say ``armed``.

    None without an error when the spool is named by a relative path: the
    configuration, read after registering, says why.
    """
    path = locations.socket_path(os.environ)
    if path is None:
        return None, None
    try:
        return ExtensionListener(path), None
    except (OSError, ValueError) as error:
        return None, error


def _extension(
    api: ExtensionsApi, listener: ExtensionListener | None, bind_error: Exception | None
) -> tuple[CoverageExtension | None, str, int]:
    """The extension, or None with why it idles and how loud to say it."""
    import logging

    from coverage_wrapper.models import CoverageConfig

    try:
        config = CoverageConfig.from_environment()
        if not config.enabled:
            return None, "COVERAGE_ENABLED=false", logging.DEBUG
        return CoverageExtension(api, config, listener, bind_error), "", logging.DEBUG
    except ValueError as error:
        # A bad variable or an unusable spool: the runtime logs the same reason when
        # it starts (it reads the same variables and prepares the same spool), so the
        # line is not repeated here.
        return None, str(error), logging.DEBUG
    except Exception as error:  # noqa: BLE001 - an extension that exits fails Lambda's init
        # Only this process knows: its socket could not be bound (a full disk, the path
        # taken by a directory...). The runtime, finding no listener, uploads by itself.
        return (
            None,
            f"{type(error).__name__}: {error}; the function uploads coverage by itself,"
            " within its invocations (if extension.sock in COVERAGE_SPOOL_DIR is in the way,"
            " remove it or set COVERAGE_SPOOL_DIR to another directory)",
            logging.WARNING,
        )


def main() -> int:
    """Bind, register, set up, then serve events; when there is nothing to deliver,
    stay out of the way.

    Whatever the reason, the way out is the same: register and idle. Reporting an
    init error instead would make Lambda fail every invocation of the function.
    """
    api = ExtensionsApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    listener, bind_error = _listen()
    # Lambda may start the runtime once this returns: what follows overlaps its init.
    api.register(invoke=not concurrent_environment(os.environ))
    extension, reason, level = _extension(api, listener, bind_error)
    if extension is None:
        if listener is not None:
            listener.close()  # the runtime then uploads by itself, if it records at all
        _log().log(level, f"Extension idle: {reason}")
        idle(api)
        return 0
    extension.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
