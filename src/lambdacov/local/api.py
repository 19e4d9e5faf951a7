"""Lambda's Runtime API and Extensions API, served on 127.0.0.1 for one environment.

The runtime (awslambdaric) and the external extensions talk to this server
exactly as they talk to Lambda. The emulator drives it from the other side:
it delivers invocations and SHUTDOWN events and waits, under one condition
variable, for the states Lambda waits for (the runtime and every extension
blocked in their ``next`` call, a response posted, an init error).

One server serves one initialisation of the environment. After a reset the
emulator starts a new one, so a request still pending from a killed process
can never take an invocation meant for its successor. (SnapStart's restored
environments get new ones at the address the snapshot knows, once the old one
is closed.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from lambdacov.errors import EmulatorError

RUNTIME = "/2018-06-01/runtime"
EXTENSION = "/2020-01-01/extension"
#: Where the emulator serves a SnapStart environment's keys (AWS_CONTAINER_CREDENTIALS_FULL_URI).
CREDENTIALS = "/lambdacov-local/credentials"
# How long the keys it serves are said to last.
_CREDENTIALS_SECONDS = 3600
EVENT_TYPES = frozenset({"INVOKE", "SHUTDOWN"})
_RESULT_PATH = re.compile(rf"^{RUNTIME}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")
# A blocked `next` re-checks for a closed server this often, so no handler
# thread outlives the environment by more than this.
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Invocation:
    """One event on its way to the runtime, with the metadata Lambda sends along."""

    request_id: str
    event: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    #: Managed Instances: the function's timeout, counted from when a runtime process takes
    #: the invocation (``deadline_ms`` is then set as it is taken).
    timeout: float | None = None


@dataclass(frozen=True)
class RuntimeOutcome:
    """What the runtime posted for an invocation: its response, or its error.

    ``received_at`` is when it arrived (``time.monotonic()``): the end of the
    runtime's part of the invocation.
    """

    request_id: str
    kind: Literal["response", "error"]
    body: bytes
    error_type: str | None
    received_at: float


@dataclass
class _Extension:
    identifier: str
    name: str
    events: frozenset[str]
    waiting: bool = False
    waiting_since: float = 0.0
    pending: deque[dict[str, Any]] = field(default_factory=deque)


class RuntimeApi:
    """The HTTP endpoints of one environment, plus the waits the emulator needs.

    Every public method is thread-safe. ``wait_until`` evaluates its predicate
    under the state lock, so predicates may call the other methods freely.
    """

    def __init__(
        self, *, function_name: str, function_version: str, handler: str, address: str = ""
    ) -> None:
        """Serve on 127.0.0.1, on the port of ``address`` (``127.0.0.1:PORT``) if given."""
        self._function = {
            "functionName": function_name,
            "functionVersion": function_version,
            "handler": handler,
        }
        self._cond = threading.Condition(threading.RLock())
        self._closed = False
        self._init_done = False
        # Runtime processes blocked in invocation/next: one, or several on Managed Instances.
        self._runtime_waiters = 0
        self._runtime_waiting_since = 0.0
        self._runtime_queue: deque[Invocation] = deque()
        self._outcomes: dict[str, RuntimeOutcome] = {}
        self._in_flight: set[str] = set()
        # When each invocation was taken by a runtime process, and the latest such time.
        self._taken: dict[str, float] = {}
        self.last_taken_at = 0.0
        self._extensions: dict[str, _Extension] = {}
        self.init_error: dict[str, Any] | None = None
        #: False on Managed Instances, where extensions get no INVOKE (see emulator.py).
        self.invoke_extensions = True
        # SnapStart: called when the runtime asks for its restore (the snapshot is taken
        # then); it returns once the environment is restored.
        self.on_restore: Callable[[], None] | None = None
        self.extension_errors: list[tuple[str, str, dict[str, Any]]] = []
        # SnapStart: the keys served at CREDENTIALS, the token that must come with a
        # request, and when each request came (time.monotonic()).
        self._credentials: dict[str, str] = {}
        self._credentials_token = ""
        self.credential_requests: list[float] = []
        port = int(address.rpartition(":")[2]) if address else 0
        try:
            self._server = _Server(("127.0.0.1", port), _Handler)
        except OSError as error:
            raise EmulatorError(
                f"cannot serve the Runtime API at 127.0.0.1:{port}: {error.strerror or error}"
            ) from error
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="lambdacov-runtime-api",
            daemon=True,
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the value of AWS_LAMBDA_RUNTIME_API."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def close(self) -> None:
        """Stop serving and release every handler blocked in a ``next`` call."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    # -- waits used by the emulator -------------------------------------------------

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every state change and
        every ``_POLL_SECONDS``, since process exits do not notify); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, _POLL_SECONDS))
            return True

    def notify(self) -> None:
        """Wake waiters so they re-check their predicate."""
        with self._cond:
            self._cond.notify_all()

    @property
    def runtime_ready(self) -> bool:
        """True while the runtime (one of its processes, on Managed Instances) is blocked
        in ``invocation/next`` with nothing to take."""
        with self._cond:
            return self._runtime_waiters > 0 and not self._runtime_queue

    @property
    def waiting_runtime_processes(self) -> int:
        """How many runtime processes are blocked in ``invocation/next`` (Managed
        Instances run several)."""
        with self._cond:
            return self._runtime_waiters

    def extensions_ready(self, event_type: str | None = None) -> bool:
        """True when every extension (registered for ``event_type``, if given) is
        blocked in ``event/next`` with no event left to take."""
        with self._cond:
            return all(
                ext.waiting and not ext.pending
                for ext in self._extensions.values()
                if event_type is None or event_type in ext.events
            )

    def ready_extension_names(self) -> list[str]:
        """Names of the registered extensions blocked in ``event/next``."""
        with self._cond:
            return [ext.name for ext in self._extensions.values() if ext.waiting]

    def extension_names(self, event_type: str | None = None) -> list[str]:
        """Names of the registered extensions (registered for ``event_type``, if given)."""
        with self._cond:
            return [
                ext.name
                for ext in self._extensions.values()
                if event_type is None or event_type in ext.events
            ]

    def unresponsive_extensions(self, event_type: str) -> list[str]:
        """Names of extensions registered for ``event_type`` still busy with an event."""
        with self._cond:
            return [
                ext.name
                for ext in self._extensions.values()
                if event_type in ext.events and not (ext.waiting and not ext.pending)
            ]

    def idle_since(self) -> float | None:
        """When the runtime and every extension were last all blocked in ``next``: the
        latest of their ``next`` calls (``time.monotonic()``), or None while one is busy."""
        with self._cond:
            if not (self.runtime_ready and self.extensions_ready()):
                return None
            return max(
                [self._runtime_waiting_since, *(e.waiting_since for e in self._extensions.values())]
            )

    def outcome(self, request_id: str) -> RuntimeOutcome | None:
        """The runtime's response or error for ``request_id``, once posted."""
        with self._cond:
            return self._outcomes.get(request_id)

    def serve_credentials(self, keys: dict[str, str], token: str) -> str:
        """Serve ``keys`` (AWS_ACCESS_KEY_ID...) as a container credential endpoint
        does, to requests that show ``token``; return the endpoint's URL."""
        with self._cond:
            self._credentials = dict(keys)
            self._credentials_token = token
        return f"http://{self.address}{CREDENTIALS}"

    def _credentials_for(self, token: str | None) -> dict[str, str] | None:
        with self._cond:
            if not self._credentials or token != self._credentials_token:
                return None
            self.credential_requests.append(time.monotonic())
            expires = datetime.now(UTC) + timedelta(seconds=_CREDENTIALS_SECONDS)
            answer = {
                "AccessKeyId": self._credentials.get("AWS_ACCESS_KEY_ID", ""),
                "SecretAccessKey": self._credentials.get("AWS_SECRET_ACCESS_KEY", ""),
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            if self._credentials.get("AWS_SESSION_TOKEN"):
                answer["Token"] = self._credentials["AWS_SESSION_TOKEN"]
            return answer

    def mark_init_done(self) -> None:
        """End the init phase: extensions can no longer register (as in Lambda)."""
        with self._cond:
            self._init_done = True

    # -- deliveries -----------------------------------------------------------------

    def deliver_invocation(self, invocation: Invocation) -> None:
        """Queue ``invocation`` for the runtime and INVOKE for the extensions registered for it."""
        event = {
            "eventType": "INVOKE",
            "deadlineMs": invocation.deadline_ms,
            "requestId": invocation.request_id,
            "invokedFunctionArn": invocation.function_arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
        }
        with self._cond:
            # runtime_ready is False from here (an invocation is queued) until a runtime
            # process that takes it has asked again, so a waiter never sees a stale True.
            self._runtime_queue.append(invocation)
            self._in_flight.add(invocation.request_id)
            if self.invoke_extensions:
                self._queue_for_extensions("INVOKE", event)
            self._cond.notify_all()

    def deliver_shutdown(self, reason: str, deadline_ms: int) -> list[str]:
        """Queue SHUTDOWN for the extensions registered for it; return their names."""
        event = {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}
        with self._cond:
            names = self._queue_for_extensions("SHUTDOWN", event)
            self._cond.notify_all()
            return names

    def _queue_for_extensions(self, event_type: str, event: dict[str, Any]) -> list[str]:
        names = []
        for ext in self._extensions.values():
            if event_type in ext.events:
                ext.waiting = False
                ext.pending.append(event)
                names.append(ext.name)
        return names

    # -- called by the HTTP handler ---------------------------------------------------

    def _runtime_next(self, connected: Callable[[], bool] = lambda: True) -> Invocation | None:
        """The next invocation for the runtime process asking; None once the server
        closes, or once that process has gone (a killed process's request must not take
        an invocation another one would answer)."""
        with self._cond:
            self._runtime_waiters += 1
            self._runtime_waiting_since = time.monotonic()
            self._cond.notify_all()
            try:
                while not self._closed and connected():
                    if self._runtime_queue:
                        return self._take(self._runtime_queue.popleft())
                    self._cond.wait(_POLL_SECONDS)
                return None
            finally:
                self._runtime_waiters -= 1

    def _take(self, invocation: Invocation) -> Invocation:
        now = time.monotonic()
        self._taken[invocation.request_id] = self.last_taken_at = now
        self._cond.notify_all()
        if invocation.timeout is None:
            return invocation
        deadline_ms = int((time.time() + invocation.timeout) * 1000)
        return dataclasses.replace(invocation, deadline_ms=deadline_ms)

    def taken_at(self, request_id: str) -> float | None:
        """When a runtime process took ``request_id`` (``time.monotonic()``), if it has."""
        with self._cond:
            return self._taken.get(request_id)

    def withdraw(self, request_id: str) -> bool:
        """Take ``request_id`` back if no runtime process has taken it yet."""
        with self._cond:
            for invocation in self._runtime_queue:
                if invocation.request_id == request_id:
                    self._runtime_queue.remove(invocation)
                    self._in_flight.discard(request_id)
                    self._cond.notify_all()
                    return True
            return False

    def _runtime_result(
        self,
        request_id: str,
        kind: Literal["response", "error"],
        body: bytes,
        error_type: str | None,
    ) -> bool:
        with self._cond:
            if request_id not in self._in_flight:
                return False
            self._in_flight.discard(request_id)
            self._outcomes[request_id] = RuntimeOutcome(
                request_id, kind, body, error_type, time.monotonic()
            )
            self._cond.notify_all()
            return True

    def _runtime_init_error(self, body: dict[str, Any]) -> None:
        with self._cond:
            self.init_error = body
            self._cond.notify_all()

    def _register(self, name: str, events: Iterable[str]) -> str | None:
        with self._cond:
            if self._init_done:
                return None
            identifier = str(uuid.uuid4())
            self._extensions[identifier] = _Extension(identifier, name, frozenset(events))
            self._cond.notify_all()
            return identifier

    def _extension_next(self, identifier: str) -> dict[str, Any] | None:
        with self._cond:
            ext = self._extensions[identifier]
            ext.waiting = True
            ext.waiting_since = time.monotonic()
            self._cond.notify_all()
            while not ext.pending:
                if self._closed:
                    return None
                self._cond.wait(_POLL_SECONDS)
            ext.waiting = False
            return ext.pending.popleft()

    def _extension_error(self, identifier: str, kind: str, error: dict[str, Any]) -> None:
        with self._cond:
            ext = self._extensions.get(identifier)
            self.extension_errors.append((ext.name if ext else identifier, kind, error))
            self._cond.notify_all()

    def _known_extension(self, identifier: str) -> bool:
        with self._cond:
            return identifier in self._extensions

    def _function_info(self) -> dict[str, str]:
        return dict(self._function)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: RuntimeApi

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay silent: a client killed mid-request (a reset) is expected, and core never prints."""


class _Handler(BaseHTTPRequestHandler):
    """Routes the two APIs' requests to the :class:`RuntimeApi` state."""

    # libcurl (inside awslambdaric) keeps its connection alive between calls.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, delayed ACKs would
    # add 40 ms to every call on the kept-alive connection.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: the emulator's core never prints."""

    def do_GET(self) -> None:
        api = self.server.api
        if self.path == f"{RUNTIME}/invocation/next":
            invocation = api._runtime_next(self._peer_connected)
            if invocation is None:
                self.close_connection = True
                return
            self._reply(
                HTTPStatus.OK,
                invocation.event,
                {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                    "Lambda-Runtime-Trace-Id": invocation.trace_id,
                },
            )
        elif self.path == f"{RUNTIME}/restore/next":
            if api.on_restore is None:  # not a SnapStart environment: Lambda refuses too
                self._error(HTTPStatus.FORBIDDEN, "InvalidStateTransition")
                return
            api.on_restore()
            self._reply_json(HTTPStatus.OK, {})
        elif self.path == CREDENTIALS:
            keys = api._credentials_for(self.headers.get("Authorization"))
            if keys is None:
                self._error(HTTPStatus.FORBIDDEN, "AccessDenied")
                return
            self._reply_json(HTTPStatus.OK, keys)
        elif self.path == f"{EXTENSION}/event/next":
            identifier = self.headers.get("Lambda-Extension-Identifier", "")
            if not api._known_extension(identifier):
                self._error(HTTPStatus.FORBIDDEN, "Extension.InvalidExtensionIdentifier")
                return
            event = api._extension_next(identifier)
            if event is None:
                self.close_connection = True
                return
            self._reply_json(
                HTTPStatus.OK, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())}
            )
        else:
            self._error(HTTPStatus.NOT_FOUND, "InvalidRequest")

    def _peer_connected(self) -> bool:
        """False once the client closed its end (its process died)."""
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return peeked != b""

    def do_POST(self) -> None:
        api = self.server.api
        body = self._read_body()
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        result = _RESULT_PATH.match(self.path)
        if result is not None:
            kind: Literal["response", "error"] = (
                "response" if result["kind"] == "response" else "error"
            )
            if api._runtime_result(result["id"], kind, body, error_type):
                self._reply_json(HTTPStatus.ACCEPTED, {"status": "OK"})
            else:
                self._error(HTTPStatus.BAD_REQUEST, "InvalidRequestID")
        elif self.path in (f"{RUNTIME}/init/error", f"{RUNTIME}/restore/error"):
            parsed = _json_object(body)
            if error_type and "errorType" not in parsed:
                parsed["errorType"] = error_type
            api._runtime_init_error(parsed)
            self._reply_json(HTTPStatus.ACCEPTED, {"status": "OK"})
        elif self.path == f"{EXTENSION}/register":
            self._register(body)
        elif self.path in (f"{EXTENSION}/init/error", f"{EXTENSION}/exit/error"):
            identifier = self.headers.get("Lambda-Extension-Identifier", "")
            if not api._known_extension(identifier):
                self._error(HTTPStatus.FORBIDDEN, "Extension.InvalidExtensionIdentifier")
                return
            error = _json_object(body)
            error.setdefault("errorType", self.headers.get("Lambda-Extension-Function-Error-Type"))
            api._extension_error(identifier, self.path.rsplit("/", 2)[-2], error)
            self._reply_json(HTTPStatus.ACCEPTED, {"status": "OK"})
        else:
            self._error(HTTPStatus.NOT_FOUND, "InvalidRequest")

    def _register(self, body: bytes) -> None:
        api = self.server.api
        name = self.headers.get("Lambda-Extension-Name", "")
        events = _json_object(body).get("events", [])
        if not name:
            self._error(HTTPStatus.FORBIDDEN, "Extension.InvalidExtensionName")
            return
        if not isinstance(events, list) or not set(events) <= EVENT_TYPES:
            self._error(HTTPStatus.BAD_REQUEST, "Extension.InvalidEventType")
            return
        identifier = api._register(name, events)
        if identifier is None:
            self._error(HTTPStatus.FORBIDDEN, "Extension.RegistrationClosed")
            return
        self._reply_json(
            HTTPStatus.OK, api._function_info(), {"Lambda-Extension-Identifier": identifier}
        )

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
        # A runtime killed while we answer is not our problem: it is being reset.
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

    def _reply_json(
        self, status: HTTPStatus, document: object, headers: dict[str, str] | None = None
    ) -> None:
        self._reply(status, json.dumps(document).encode(), headers or {})

    def _error(self, status: HTTPStatus, error_type: str) -> None:
        message = f"{self.command} {self.path}: {status.phrase}"
        self._reply_json(status, {"errorMessage": message, "errorType": error_type})


def _json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that should be a JSON object; anything else becomes {}."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return {"errorMessage": body.decode("utf-8", errors="replace")}
    return parsed if isinstance(parsed, dict) else {}
